"""Composition root helpers: build the knowledge base, database and handler context once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.settings import Settings, link_code_key
from db.engine import make_engine, make_sessionmaker
from handlers.context import Context, HandlerConfig
from handlers.qa import NAMED_ENTRIES
from knowledge.labelled import training_examples
from knowledge.loader import KnowledgeBaseError, Problem, load_knowledge_base
from knowledge.model import Entry
from knowledge.normalize import Analyzer
from knowledge.retriever import Retriever

logger = logging.getLogger(__name__)


def build_analyzer(settings: Settings) -> Analyzer:
    """The analyser a deployment's settings name: its synonyms, its words, its cache."""
    return Analyzer(synonyms_file=settings.synonyms_file, words_file=settings.words_file,
                    cache_dir=settings.cache_dir)


def check_named_entries(entries: list[Entry], knowledge_dir: Path) -> None:
    """A deployment's own knowledge base must still hold the entries the chat names by id."""
    known = {e.id for e in entries} | {old for e in entries for old in e.replaces}
    if missing := sorted(NAMED_ENTRIES - known):
        raise KnowledgeBaseError([
            Problem(str(knowledge_dir), None, entry_id, None,
                    "the chat answers with this entry by id (handlers/qa.py), "
                    "but no entry file defines it") for entry_id in missing])


def build_retriever(settings: Settings) -> Retriever:
    """Load and validate the whole knowledge base; raises rather than start half-loaded."""
    entries = load_knowledge_base(settings.knowledge_dir)
    check_named_entries(entries, settings.knowledge_dir)
    examples = training_examples(settings.labelled_dir)
    retriever = Retriever(entries, build_analyzer(settings), examples=examples)
    logger.info("knowledge base loaded: %d entries, %d labelled questions", len(entries),
                len(examples))
    return retriever


@dataclass
class App:
    settings: Settings
    engine: AsyncEngine
    context: Context

    async def close(self) -> None:
        await self.engine.dispose()


def build_app(settings: Settings, retriever: Retriever | None = None) -> App:
    engine = make_engine(settings.database_url)
    config = HandlerConfig(
        default_prefecture=settings.default_prefecture,
        gmis_contact=settings.gmis_contact,
        link_code_days=settings.link_code_days,
        wizard_ttl_minutes=settings.wizard_ttl_minutes,
        link_code_key=link_code_key(settings),
    )
    ctx = Context(retriever or build_retriever(settings), make_sessionmaker(engine), config)
    return App(settings, engine, ctx)
