"""`process_results` for rolling-loglikelihood tasks whose documents hold plain `text` (1BW): the document's
log-likelihood paired with its word and byte counts, which lm-eval's word/byte perplexity and bits per byte weigh by."""

from __future__ import annotations


def process_results(doc: dict, results: list[float]) -> dict[str, tuple[float, int]]:
    (loglikelihood,) = results
    text = doc["text"]
    words, num_bytes = len(text.split()), len(text.encode("utf-8"))
    return {
        "word_perplexity": (loglikelihood, words),
        "byte_perplexity": (loglikelihood, num_bytes),
        "bits_per_byte": (loglikelihood, num_bytes),
    }
