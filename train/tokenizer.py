"""Tokenizers: Llama 2's SentencePiece `tokenizer.model`, a Hugging Face `tokenizer.json`, and
training a Llama-2-style BPE (byte fallback, split digits) on our own text.

encode() never adds special tokens through the backend: BOS/EOS are added here, explicitly, so both
backends behave the same (a Llama 2 tokenizer.json would otherwise add BOS in its post-processor).
"""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Iterable

# Special pieces looked up in a tokenizer.json, in order of preference.
_BOS = ("<s>", "<|begin_of_text|>", "<bos>", "<|endoftext|>")
_EOS = ("</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>")
_PAD = ("<pad>", "<|pad|>", "[PAD]")


class Tokenizer:
    """Text <-> token ids. Build with Tokenizer.from_file(path).

    bos_id / eos_id: the begin / end of sequence ids. pad_id: the tokenizer's pad token if it has one,
    else eos_id (Llama 2 defines none; anything padded is masked out of losses and attention anyway).
    chat_template: the Jinja chat template of the folder's tokenizer_config.json, or None.
    """

    def __init__(self, sp=None, hf=None, chat_template: str | None = None):
        self._sp, self._hf = sp, hf
        self.chat_template = chat_template
        if sp is not None:
            self.vocab_size = sp.vocab_size()
            self.bos_id, self.eos_id = sp.bos_id(), sp.eos_id()
            pad = sp.pad_id()
        else:
            self.vocab_size = hf.get_vocab_size(with_added_tokens=True)
            self.bos_id, self.eos_id, pad = (_first_id(hf, names) for names in (_BOS, _EOS, _PAD))
            if self.eos_id is None:
                raise ValueError("tokenizer.json has no end-of-sequence token (tried " + ", ".join(_EOS) + ")")
        self.pad_id = pad if pad is not None and pad >= 0 else self.eos_id

    @classmethod
    def from_file(cls, path) -> "Tokenizer":
        """Load a SentencePiece model (tokenizer.model / *.model), a tokenizer.json, or a directory
        holding one of them (tokenizer.model preferred, as in Llama 2 releases). The chat template
        comes from tokenizer_config.json beside the file, when there is one."""
        path = Path(path)
        if path.is_dir():
            for name in ("tokenizer.model", "tokenizer.json"):
                if (path / name).exists():
                    return cls.from_file(path / name)
            raise FileNotFoundError(f"no tokenizer.model or tokenizer.json in {path}")
        template = read_chat_template(path.parent)
        if path.suffix == ".json":
            from tokenizers import Tokenizer as HFTokenizer

            return cls(hf=HFTokenizer.from_file(str(path)), chat_template=template)
        import sentencepiece as spm

        return cls(sp=spm.SentencePieceProcessor(model_file=str(path)), chat_template=template)

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]:
        """Token ids of `text`, with BOS first (default) and EOS last (off by default)."""
        return self.encode_batch([text], bos=bos, eos=eos)[0]

    def encode_batch(self, texts: list[str], bos: bool = True, eos: bool = False, num_threads: int = 1) -> list[list[int]]:
        """encode() for many texts at once (the backends run the batch in native code)."""
        if self._sp is not None:
            ids = self._sp.encode(list(texts), num_threads=num_threads)
        else:
            ids = [e.ids for e in self._hf.encode_batch(list(texts), add_special_tokens=False)]
        head = [self.bos_id] if bos and self.bos_id is not None else []
        tail = [self.eos_id] if eos else []
        return [head + x + tail for x in ids]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; BOS, EOS and padding are dropped."""
        ids = [int(i) for i in ids]
        if self._sp is not None:
            return self._sp.decode(ids)
        return self._hf.decode(ids, skip_special_tokens=True)

    def id_to_piece(self, i: int) -> str:
        return self._sp.id_to_piece(i) if self._sp is not None else self._hf.id_to_token(i)


def read_chat_template(folder: Path) -> str | None:
    """The ``chat_template`` of ``folder/tokenizer_config.json`` (or chat_template.jinja), or None."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    config = folder / "tokenizer_config.json"
    try:
        template = json.loads(config.read_text()).get("chat_template") if config.is_file() else None
    except (json.JSONDecodeError, AttributeError):
        return None
    return template if isinstance(template, str) else None


def export_hf_tokenizer(src, out_dir, chat_template: str | None = None) -> Path:
    """Copy tokenizer file ``src`` into ``out_dir`` under its canonical name (tokenizer.model or
    tokenizer.json) and write tokenizer_config.json (special tokens, ``chat_template``) so that
    both ``Tokenizer.from_file(out_dir)`` and ``transformers.AutoTokenizer`` load it. Returns the copy."""
    src, out_dir = Path(src), Path(out_dir)
    tok = Tokenizer.from_file(src)
    name = "tokenizer.json" if src.suffix == ".json" else "tokenizer.model"
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, out_dir / (name + ".tmp"))
    (out_dir / (name + ".tmp")).replace(out_dir / name)
    special = {k: tok.id_to_piece(i) for k, i in (("bos_token", tok.bos_id), ("eos_token", tok.eos_id))
               if i is not None and i >= 0}
    config = {"tokenizer_class": "LlamaTokenizer" if name == "tokenizer.model" else "PreTrainedTokenizerFast",
              **special, "add_bos_token": True, "add_eos_token": False, "legacy": False,
              "model_max_length": 1_000_000, "clean_up_tokenization_spaces": False}
    if tok._sp is not None:
        config["unk_token"] = tok.id_to_piece(tok._sp.unk_id())
    if chat_template:
        config["chat_template"] = chat_template
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out_dir / name


def _first_id(hf, names) -> int | None:
    for name in names:
        i = hf.token_to_id(name)
        if i is not None:
            return i
    return None


def _sentences(texts: Iterable[str], max_bytes: int):
    """Lines of each text, cut to at most max_bytes of UTF-8 (SentencePiece skips longer sentences)."""
    for text in texts:
        for line in text.splitlines():
            data = line.encode("utf-8")
            for start in range(0, len(data), max_bytes):
                piece = data[start:start + max_bytes].decode("utf-8", errors="ignore")
                if piece.strip():
                    yield piece


def train_bpe(texts_iter: Iterable[str], vocab_size: int, out_path, num_threads: int = 2,
              max_sentences: int = 2_000_000, seed: int = 0) -> Tokenizer:
    """Train a BPE SentencePiece model with Llama 2's trainer settings and write it to out_path.

    Settings as in Llama 2's tokenizer.model trainer_spec: BPE, byte fallback (every byte has a piece,
    so nothing is ever <unk>), split digits, identity normalisation, a dummy prefix space, extra
    whitespace kept, whitespace-only pieces allowed, ids <unk>=0 <s>=1 </s>=2, no pad.
    vocab_size must exceed 259 (3 specials + 256 byte pieces). Texts are split into lines; at most
    max_sentences lines, sampled with `seed` when there are more, are used.
    """
    import sentencepiece as spm

    if vocab_size <= 259:
        raise ValueError(f"vocab_size {vocab_size} leaves no room beyond the 3 specials and 256 byte pieces")
    max_bytes = 4192
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    spm.SentencePieceTrainer.train(
        sentence_iterator=_sentences(texts_iter, max_bytes), model_writer=model,
        model_type="bpe", vocab_size=vocab_size, byte_fallback=True, split_digits=True,
        character_coverage=0.99995, normalization_rule_name="identity", add_dummy_prefix=True,
        remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, max_sentencepiece_length=16,
        max_sentence_length=max_bytes, input_sentence_size=max_sentences, shuffle_input_sentence=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=num_threads, minloglevel=2,
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(model.getvalue())
    return Tokenizer.from_file(out_path)
