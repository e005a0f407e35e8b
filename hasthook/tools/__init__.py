"""The article's operator tools, done right: library functions the commands call."""
