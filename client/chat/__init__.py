"""``sonet chat``: the terminal chat app (textual) on the device's live session.

client/chat/app.py is the app, screens.py its windows, widgets.py and render.py how it draws,
bridge.py runs trio as a guest on textual's asyncio loop, session.py is the trio side.
"""
