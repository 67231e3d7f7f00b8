"""The users and chats the Telegram tests talk in."""

from __future__ import annotations

from .fake_bot_api import BOT_USERNAME, group_chat, private_chat, user

ADA = user(42, "Ada", "ada")
BOB = user(43, "Bob", "bob")
EVE = user(66, "Eve", "eve")
ADA_DM = private_chat(ADA)
BOB_DM = private_chat(BOB)
EVE_DM = private_chat(EVE)
TEAM = group_chat(-100777, "Team")
FORUM = group_chat(-100888, "Forum", forum=True)
MENTION = f"@{BOT_USERNAME}"
