"""Write src/ventriloquist/assets/mel_filters.npz (the Mel filterbank and STFT window librosa makes for
the settings in ventriloquist.config) and whisper_mel.npz (the speech encoder's filterbank), so
inference computes its spectrograms without importing librosa.

    python tools/make_mel_filters.py
"""
from __future__ import annotations

import numpy as np

from ventriloquist.audio import MEL_FILTERS, _analysis, mel_constants_librosa
from ventriloquist.speech_encoder import FILTERS, filters_analysis, filters_librosa

if __name__ == "__main__":
    mel, window = mel_constants_librosa()
    np.savez_compressed(MEL_FILTERS, mel=mel, window=window, analysis=_analysis())
    print(f"wrote {MEL_FILTERS} ({MEL_FILTERS.stat().st_size // 1024} KB)")
    np.savez_compressed(FILTERS, mel=filters_librosa(), analysis=filters_analysis())
    print(f"wrote {FILTERS} ({FILTERS.stat().st_size // 1024} KB)")
