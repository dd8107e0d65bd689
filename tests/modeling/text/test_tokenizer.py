import importlib.util
import warnings

import pytest
import torch

from reference_data import golden
from uniref.modeling.text import tokenizer as tokmod
from uniref.modeling.text import build_tokenizer, clean_expression, find_default_vocab, tokenize


@pytest.fixture(scope="module")
def vocab_file():
    try:
        return find_default_vocab()
    except FileNotFoundError as err:
        pytest.skip(f"bert-base-uncased vocab.txt unavailable: {err}")


def test_matches_official_tokens(vocab_file):
    full = golden("full-tiny-public")
    tok = build_tokenizer(vocab_file, vocab_size=full.meta["tiny_bert_config"]["vocab_size"])
    for task in ("ris", "rvos"):
        sentence = clean_expression(full.meta["sentences"][f"{task}_raw"])
        assert sentence == full.meta["meta"]["captions_fed_to_text_encoder"][task][0]
        out = tokenize(tok, [sentence])
        assert out.input_ids.dtype == torch.long and out.input_ids.shape == (1, 77)
        assert torch.equal(out.input_ids, full.inputs[f"{task}.input_ids"])
        assert torch.equal(out.attention_mask, full.inputs[f"{task}.attention_mask"])
        assert tok.convert_ids_to_tokens(out.input_ids[0].tolist()) == full.meta["meta"]["tokens"][task]


def test_default_vocab_is_bert_base_uncased(vocab_file):
    tok = build_tokenizer()
    assert len(tok) == 30522  # a 5-token vocabulary would mean the file was silently ignored
    assert tok.convert_tokens_to_ids("dog") != tok.unk_token_id


def test_vocab_size_mismatch_is_a_clear_error(vocab_file):
    with pytest.raises(ValueError, match="vocab_size=1000"):
        build_tokenizer(vocab_file, vocab_size=1000)


def test_missing_vocab_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        build_tokenizer(tmp_path / "nope.txt")


def test_find_default_vocab_names_the_file_when_package_absent(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="vocab.txt.*30522"):
        find_default_vocab()


def test_find_default_vocab_rejects_other_vocabulary(monkeypatch, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "vocab.txt").write_text("[PAD]\n[UNK]\n")

    class Spec:
        submodule_search_locations = [str(tmp_path)]

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: Spec())
    with pytest.raises(FileNotFoundError, match="is not the bert-base-uncased"):
        tokmod.find_default_vocab()


def test_truncation_warns_and_keeps_77(vocab_file):
    tok = build_tokenizer(vocab_file)
    with pytest.warns(UserWarning, match="1 expression.*truncated"):
        out = tokenize(tok, ["dog " * 100, "a cat"])
    assert out.input_ids.shape == (2, 77)
    assert out.input_ids[0, -1].item() == tok.sep_token_id
    assert int(out.attention_mask[1].sum()) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokenize(tok, "a cat")  # no warning for a short sentence; a str is one sentence


def test_tokenize_rejects_empty_list(vocab_file):
    with pytest.raises(ValueError):
        tokenize(build_tokenizer(vocab_file), [])


@pytest.mark.parametrize(
    "raw,flipped,expected",
    [
        ("The man in the RED shirt, standing on the left!", False, "the man in the red shirt standing on the left"),
        ('(A) "tall" guy\'s hat; #1: ok?*', False, "a tall guys hat 1 ok"),
        ("left-most / right", False, "left most   right"),
        ("the LEFT dog, not the right one", True, "the right dog not the left one"),
        ("leftmost and rightmost", True, "rightmost and leftmost"),
    ],
)
def test_clean_expression(raw, flipped, expected):
    assert clean_expression(raw, flipped=flipped) == expected
