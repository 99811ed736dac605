"""Channels: config `type:` name -> class. PLACEHOLDER, filled by the channels issue."""
