#!/usr/bin/env python3
"""Generates the embedded demo dataset (train.csv, eval.csv) that `launch/compare.sh` uses when no
real data is given. Deterministic (seed 1234). Synthetic movie reviews: filler sentences plus a few
sentiment phrases, some negated ("not great"), ~4% label noise, so a small model must read words in
context and no method reaches 100%. Columns: review,label (1 = positive), like the IMDB subset.

    python3 data-prep/demo/make_demo_data.py data-prep/demo
"""
import csv, os, random, sys

POS = ["great", "wonderful", "brilliant", "moving", "delightful", "superb", "funny", "beautiful",
       "gripping", "charming", "excellent", "memorable", "touching", "clever", "stunning"]
NEG = ["awful", "boring", "dreadful", "terrible", "dull", "clumsy", "tedious", "pointless",
       "weak", "forgettable", "annoying", "bland", "lazy", "messy", "painful"]
THINGS = ["the plot", "the acting", "the script", "the ending", "the soundtrack", "the cast",
          "the direction", "the dialogue", "the pacing", "the cinematography", "the story", "the lead"]
FILLER = ["I watched this movie last weekend with my family.", "It runs a little over two hours.",
          "The film is set in a small town in the fifties.", "I had read the book before.",
          "My friend recommended it to me.", "It was released on a streaming service.",
          "There is a long scene at a train station.", "The director has made several films.",
          "Most of it was shot on location.", "I saw it in an almost empty theater.",
          "The trailer gives away a lot.", "It is based on a true story.",
          "There are a few songs in it.", "The main character is a retired teacher."]


def phrase(rng, positive):
    thing = rng.choice(THINGS)
    negate = rng.random() < 0.3
    words = POS if positive != negate else NEG
    adj = rng.choice(words)
    if negate:
        return f"{thing} was not {adj}".capitalize() + "."
    return f"{thing} was {adj}".capitalize() + "."


def review(rng):
    label = rng.randint(0, 1)
    parts = rng.sample(FILLER, rng.randint(2, 5))
    for _ in range(rng.randint(1, 3)):
        parts.insert(rng.randint(0, len(parts)), phrase(rng, label == 1))
    if rng.random() < 0.25:  # a mixed remark that carries little signal
        parts.insert(rng.randint(0, len(parts)), phrase(rng, label == 0) + " But overall")
    noisy = label if rng.random() > 0.04 else 1 - label
    return " ".join(parts), noisy


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    rng = random.Random(1234)
    for name, n in [("train.csv", 1600), ("eval.csv", 400)]:
        with open(os.path.join(out, name), "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["review", "label"])
            for _ in range(n):
                w.writerow(review(rng))


if __name__ == "__main__":
    main()
