"""Text in and out: the package's `tokenizers` file, and incremental detokenisation with stop
strings, so a stream never shows half a UTF-8 character or the start of a stop string it
later takes back."""

from __future__ import annotations

from pathlib import Path

from bushu.errors import InvalidInput

REPLACEMENT = "\ufffd"


class TextCodec:
    def __init__(self, tokenizer_file: Path, *, add_special_tokens: bool = False) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.add_special_tokens = add_special_tokens

    def encode(self, text: str, field: str = "prompt") -> list[int]:
        if not isinstance(text, str):
            raise InvalidInput(f"'{field}' must be a string")
        if not text:
            raise InvalidInput(f"'{field}' is empty")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"'{field}' is not valid UTF-8 (it holds a lone surrogate)") from None
        ids = self.tokenizer.encode(text, add_special_tokens=self.add_special_tokens).ids
        if not ids:
            raise InvalidInput(f"'{field}' has no tokens")
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


class Detokenizer:
    """Text of a growing token list, a piece at a time (the offsets of HF's TextStreamer)."""

    def __init__(self, codec: TextCodec, stop: tuple[str, ...] = ()) -> None:
        self.codec = codec
        self.stop = stop
        self._hold = max((len(s) for s in stop), default=1) - 1
        self._prefix = self._read = 0
        self.text = ""  # everything decoded so far
        self.sent = 0  # characters of `text` already handed out

    def add(self, ids: list[int]) -> bool:
        """Take the tokens so far (the last one new); True if a stop string ended the text."""
        new = self.codec.decode(ids[self._prefix:])
        old = self.codec.decode(ids[self._prefix:self._read])
        if len(new) > len(old) and not new.endswith(REPLACEMENT):
            start = max(0, len(self.text) - self._hold)
            self.text += new[len(old):]
            self._prefix, self._read = self._read, len(ids)
            for stop in self.stop:
                at = self.text.find(stop, start)
                if at >= 0:
                    self.text = self.text[:at]
                    return True
        return False

    def flush(self, final: bool) -> str:
        """New text safe to show: all of it at the end, else all but what may start a stop string."""
        upto = len(self.text) if final else max(self.sent, len(self.text) - self._hold)
        piece, self.sent = self.text[self.sent:upto], upto
        return piece
