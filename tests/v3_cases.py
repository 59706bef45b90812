"""The V3 flash parity cases: discovery by kind, their tiny models loaded, a release-layout weights folder."""

from __future__ import annotations

import json
from pathlib import Path

from tests.parity_cases import PARITY_V3_ROOT, discover_cases

BASE = "models/Wan2.1-Fun-V1.1-1.3B-InP"


def v3_cases(kind: str) -> list[Path]:
    return [c for c in discover_cases(PARITY_V3_ROOT) if json.loads((c / "case.json").read_text())["kind"] == kind]


def tiny_clip_heads(case_dir: Path) -> int:
    return int(json.loads((case_dir / "config" / "tiny_dims.json").read_text())["clip"]["vision_heads"])


def tiny_tokenizer_folder(folder: Path) -> Path:
    """A tiny umT5-like fast tokenizer (Unigram, pad 0, EOS 1 appended) saved as a transformers folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(f"\u2581{w}", -1.0) for w in "a b c talk".split()]
    raw = Tokenizer(models.Unigram(vocab, unk_id=2))
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    raw.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(folder)
    return folder


def make_v3_weights_folder(case_dir: Path, target: Path) -> Path:
    """A flash case's models as a complete V3 weights folder (release layout): links to its files, a tiny
    tokenizer, and the override file for the tiny CLIP head count."""
    from echomimic import release
    from echomimic.v3.files import OVERRIDES_FILE

    folder = target / "weights_v3"
    for item in release.V3_FLASH_FILES:
        source = case_dir / "models" / item.relative_path
        if source.is_file():
            (folder / item.relative_path).parent.mkdir(parents=True, exist_ok=True)
            (folder / item.relative_path).symlink_to(source)
    tiny_tokenizer_folder(folder / release.V3_TOKENIZER_FOLDER)
    (folder / OVERRIDES_FILE).write_text(json.dumps({"clip_num_heads": tiny_clip_heads(case_dir)}))
    return folder
