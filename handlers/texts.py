"""User-facing Japanese texts that more than one handler shows, and how a quote is cut."""


def cut(text: str, limit: int) -> str:
    """Text cut to `limit` characters with …, its lines kept (a clinic's words on a card)."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shorten(text: str, limit: int = 40) -> str:
    """One line, cut (a question quoted inside a sentence)."""
    return cut(" ".join(text.split()), limit)


def staff_of(prefecture_name: str | None) -> str:
    """Who answers: the clinic's own prefecture once the chat's is known (「東京都の担当者」),
    otherwise the generic 都道府県 (the tenant is then only the bot's default)."""
    return f"{prefecture_name}の担当者" if prefecture_name else "都道府県の担当者"


def desk_of(inquiry_contact: str | None) -> str:
    """Where to call in a hurry: the desk the prefecture gave (「京都府 医療政策課 075-…」),
    else the generic 都道府県の窓口."""
    return inquiry_contact or "都道府県の窓口"


APOLOGY = (
    "申し訳ありません。ただいま処理中に問題が発生しました。"
    "お手数ですが、少し時間をおいてもう一度お試しください。"
)
EMPTY = "ご質問を文章で入力してください。例：「報告期間はいつからいつまでですか」"
UNREADABLE = (
    "申し訳ありません、ご質問の内容を読み取れませんでした。"
    "お手数ですが、日本語の文章でもう一度ご入力ください。"
)
BOT_NAME = "かかりつけ医機能報告のサポートボットです。"
WELCOME = (
    BOT_NAME + "次のようなことをお手伝いします。\n"
    "・制度についてのご質問にお答えします（例：「報告期間はいつまで？」）\n"
    "・「詳しく」：直前のお答えに補足があれば続けてお見せします\n"
    "・「報告状況」：貴院の報告状況をお知らせします（連携が必要です）\n"
    "・「対象か確認」：報告の対象かどうか、1号・2号機能の目安を確認します\n"
    "・「連携 コード」：案内文書に記載の連携コードで貴院とこのチャットを結びます\n"
    "・「担当者に聞く」：都道府県の担当者にお問い合わせを送ります\n"
    "ご質問をそのまま入力してください。"
)
# Ends every reply that offers to hand the question to staff, so a typed 「はい」 can be
# read as the answer to it (handlers.smalltalk).
OFFER_QUESTION = "都道府県の担当者にご質問をお送りしましょうか。"
NOTED = "承知しました。ほかにご質問があれば、いつでも入力してください。"
GREETING_INTRO = (BOT_NAME + "報告の対象・期限・報告項目などのご質問にお答えしますので、"
                  "そのまま入力してください。使い方は「ヘルプ」と入力すると表示されます。")
