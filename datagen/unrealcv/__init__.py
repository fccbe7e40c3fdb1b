"""Capture multi-view training scenes from a running Unreal game through the UnrealCV plugin.

``connection`` talks to the game (the plugin's wire protocol over TCP or its Unix socket,
deadlines, reconnects, error replies), ``game`` knows the commands of each plugin build,
``payloads`` decodes what UnrealCV sends (PNG, ``npy``), ``planning`` chooses camera poses,
``capture`` drives one game into one scene folder, ``workers`` drives several games at once,
``config`` reads the TOML plan and ``cli`` adds ``worldfm datagen unrealcv``.
"""
