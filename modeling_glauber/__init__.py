"""Glauber-dynamics diffusion LMs on pretrained encoder-decoders (T5, Flan-T5, UL2, T5-Gemma).

Importing this package registers `GlauberT5Config` / `GlauberT5ForDiffusion` with `AutoConfig`, `AutoModel` and
`AutoModelForSeq2SeqLM`. The modules here are copied into every checkpoint, so they import only each other.
"""

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

from .configuration_glauber import GlauberT5Config
from .generation_glauber import CausalLMEnergy, GlauberGenerationMixin, GlauberMetropolisOutput
from .infill import GlauberPrefix
from .loss import glauber_score_entropy
from .modeling_glauber import GlauberGenerateOutput, GlauberT5ForDiffusion
from .noising import NoisingTrace, run_glauber_noising
from .sampling import SamplingParams
from .schedule import GlauberSchedule, get_schedule

AutoConfig.register(GlauberT5Config.model_type, GlauberT5Config, exist_ok=True)
AutoModel.register(GlauberT5Config, GlauberT5ForDiffusion, exist_ok=True)
AutoModelForSeq2SeqLM.register(GlauberT5Config, GlauberT5ForDiffusion, exist_ok=True)

__all__ = [
    "CausalLMEnergy",
    "GlauberGenerationMixin",
    "GlauberMetropolisOutput",
    "GlauberT5Config",
    "GlauberT5ForDiffusion",
    "GlauberGenerateOutput",
    "GlauberPrefix",
    "GlauberSchedule",
    "NoisingTrace",
    "SamplingParams",
    "get_schedule",
    "glauber_score_entropy",
    "run_glauber_noising",
]
