"""Token ids from the reference processor for tricky texts (tests/goldens/tokenizer_ids.json).

    /work/refvenv/bin/python tests/reference/make_tokenizer_goldens.py      (or .venv-ref/bin/python)

qwen-tts loads its processor with fix_mistral_regex=True, which under transformers 4.57.3 changes the split
regex of a local checkpoint with a real-size vocab (> 100000) depending on config.json's transformers_version.
Both branches are recorded on the real-size test tokenizer: config.json saying 4.57.3 like the released models
(regex swapped) and 4.50.0 (regex kept).
"""

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSProcessor  # noqa: E402
from transformers import AutoConfig, AutoProcessor  # noqa: E402

from tests.fixtures.tokenizer_cases import TEMPLATES, TEXTS, VERSIONS, make_tokenizer_dir  # noqa: E402


def ids_for(model_dir: Path) -> dict:
    # Exactly how Qwen3TTSModel.from_pretrained loads its processor (W:108-118), without the weights.
    AutoConfig.register("qwen3_tts", Qwen3TTSConfig, exist_ok=True)
    AutoProcessor.register(Qwen3TTSConfig, Qwen3TTSProcessor, exist_ok=True)
    processor = AutoProcessor.from_pretrained(str(model_dir), fix_mistral_regex=True)
    return {
        text: {
            name: processor(text=template.format(text), return_tensors="pt", padding=True)["input_ids"][
                0
            ].tolist()
            for name, template in TEMPLATES.items()
        }
        for text in TEXTS
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = {version: ids_for(make_tokenizer_dir(Path(tmp) / version, version)) for version in VERSIONS}
    target = ROOT / "tests" / "goldens" / "tokenizer_ids.json"
    target.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
