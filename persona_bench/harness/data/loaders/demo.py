"""The embedded default survey: generated deterministically in code, no data files.

About 2,000 respondents with the 12 OpinionQA traits answer 60 ordinal questions over ten
topics. Behind the answers sit six planted opinion camps: a person's camp is drawn from
probabilities that depend on party, ideology, religious attendance, age and education (so
demographics inform but never determine it); their latent opinion vector is the camp's centre
plus individual noise plus a personal response style; each question loads on one or two of
five latent dimensions, and answers follow an ordered-logit model. A third of the questions go
to everyone, the rest to one of two half-sample forms (form splits), a few answers are
refused (dropped) and a few trait values are "Refused", as in real Pew waves. Two questions
list their options out of ordinal order (like WORLDDANGER_W26).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from ..survey import Question, Survey, responses_frame

DEMO_SEED = 2023
DEMO_PEOPLE = 2000
BUILT_IN_QUESTIONS = 60
WAVE_QUESTIONS = 150  # larger surveys: questions per wave (each person answers one wave, as in OpinionQA)
N_CAMPS = 6
LATENT_DIMS = ("economy", "social", "security", "technology", "trust")

# Trait -> (options, population shares); the options are OpinionQA's metadata.csv lists.
TRAITS: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "CREGION": (("Northeast", "Midwest", "South", "West"), (0.18, 0.21, 0.38, 0.23)),
    "AGE": (("18-29", "30-49", "50-64", "65+"), (0.20, 0.33, 0.26, 0.21)),
    "SEX": (("Male", "Female"), (0.48, 0.52)),
    "EDUCATION": (
        ("Less than high school", "High school graduate", "Some college, no degree", "Associate's degree",
         "College graduate/some postgrad", "Postgraduate"),
        (0.08, 0.27, 0.21, 0.10, 0.21, 0.13),
    ),
    "CITIZEN": (("Yes", "No"), (0.93, 0.07)),
    "MARITAL": (("Married", "Divorced", "Separated", "Widowed", "Never been married"), (0.52, 0.12, 0.02, 0.06, 0.28)),
    "RELIG": (
        ("Protestant", "Roman Catholic", "Mormon", "Orthodox", "Jewish", "Muslim", "Buddhist", "Hindu",
         "Atheist", "Agnostic", "Other", "Nothing in particular"),
        (0.40, 0.20, 0.02, 0.01, 0.02, 0.01, 0.01, 0.01, 0.05, 0.06, 0.03, 0.18),
    ),
    "RELIGATTEND": (
        ("More than once a week", "Once a week", "Once or twice a month", "A few times a year", "Seldom", "Never"),
        (0.08, 0.20, 0.11, 0.15, 0.22, 0.24),
    ),
    "POLPARTY": (("Republican", "Democrat", "Independent", "Other"), (0.27, 0.33, 0.31, 0.09)),
    "INCOME": (
        ("Less than $30,000", "$30,000-$50,000", "$50,000-$75,000", "$75,000-$100,000", "$100,000 or more"),
        (0.25, 0.20, 0.19, 0.14, 0.22),
    ),
    "POLIDEOLOGY": (("Very conservative", "Conservative", "Moderate", "Liberal", "Very liberal"), (0.09, 0.26, 0.37, 0.20, 0.08)),
    "RACE": (("White", "Black", "Asian", "Hispanic", "Other"), (0.63, 0.12, 0.05, 0.16, 0.04)),
}

# (topic, main latent dimension, question stem with {} for the item, options, items)
QUESTION_BLOCKS = (
    ("economy and inequality", 0, "How much of a problem is {} in the country today?",
     ("A very big problem", "A moderately big problem", "A small problem", "Not a problem at all"),
     ("the gap between the rich and the poor", "the federal budget deficit", "the cost of health care",
      "the availability of good-paying jobs")),
    ("economy and inequality", 0, "Should the federal government spend more, the same, or less on {}?",
     ("Spend more", "Spend about the same", "Spend less"),
     ("aid to the poor", "Social Security", "infrastructure", "unemployment benefits")),
    ("religion", 1, "How much do you agree with the following statement? {}",
     ("Strongly agree", "Somewhat agree", "Somewhat disagree", "Strongly disagree"),
     ("Religion should play a bigger role in public life.", "It is necessary to believe in God to be moral.",
      "Traditional family values are under threat.", "Schools should teach more about the nation's founding faith.")),
    ("family and relationships", 1, "Is the growing number of {} good or bad for society?",
     ("Very good for society", "Somewhat good for society", "Neither good nor bad", "Somewhat bad for society",
      "Very bad for society"),
     ("unmarried couples raising children", "women working outside the home", "interracial marriages",
      "people choosing not to have children")),
    ("crime/security", 2, "How safe, if at all, do you feel {}?",
     ("Very safe", "Somewhat safe", "Not too safe", "Not at all safe"),
     ("walking alone at night in your neighborhood", "in a crowded public place", "in your own home",
      "using public transportation")),
    ("crime/security", 2, "Do you favor or oppose {}?",
     ("Strongly favor", "Somewhat favor", "Somewhat oppose", "Strongly oppose"),
     ("allowing teachers to carry guns in schools", "background checks for private gun sales",
      "more police officers on the streets", "longer prison sentences for repeat offenders")),
    ("corporations, banks, technology and automation", 3, "Overall, what impact do you think {} will have on the country?",
     ("A mostly positive impact", "A mix of positive and negative", "A mostly negative impact"),
     ("driverless vehicles", "robots doing jobs now done by people", "artificial intelligence in hiring",
      "online learning replacing classrooms")),
    ("corporations, banks, technology and automation", 3, "How worried, if at all, are you about {}?",
     ("Very worried", "Somewhat worried", "Not too worried", "Not at all worried"),
     ("losing your job to automation", "companies collecting your personal data", "social media spreading false news",
      "children spending too much time online")),
    ("leadership", 4, "How much confidence do you have in {} to act in the best interests of the public?",
     ("A great deal of confidence", "A fair amount of confidence", "Not too much confidence", "No confidence at all"),
     ("elected officials", "scientists", "the news media", "business leaders")),
    ("leadership", 4, "How much of the time do you think you can trust {} to do what is right?",
     ("Just about always", "Most of the time", "Only some of the time", "Never"),
     ("the federal government", "your local government", "the courts", "the military")),
    ("future", 0, "Thirty years from now, do you think {}?",
     ("It will be better", "It will stay about the same", "It will be worse"),
     ("the average family's standard of living", "the condition of the environment", "the state of the public schools",
      "relations between racial groups")),
    ("future", 3, "By 2050, how likely is it that {}?",
     ("Will definitely happen", "Will probably happen", "Will probably not happen", "Will definitely not happen"),
     ("a cure for cancer will be found", "most cars will drive themselves", "people will live on Mars",
      "most stores will have no human workers")),
    ("immigration", 1, "How much do you agree that {}?",
     ("Completely agree", "Mostly agree", "Mostly disagree", "Completely disagree"),
     ("immigrants strengthen the country with their hard work", "the country should admit more refugees",
      "a wall should be built along the southern border", "immigrants take jobs away from citizens")),
    ("discrimination", 1, "How much discrimination is there against {} in our society today?",
     ("A lot", "Some", "Only a little", "None at all"),
     ("Black people", "women", "gay and lesbian people", "evangelical Christians")),
    ("global attitudes and foreign policy", 2, "Compared to 50 years ago, do you think {}",
     ("The country is safer", "The country is more dangerous", "The country is neither safer nor more dangerous"),
     ("the world as a whole is", "the country's standing abroad is", "the country's borders are",
      "the country's alliances are")),
)
# Blocks whose listed options are not in ordinal order: (listed ordinal positions).
NOMINAL_ORDER = {14: (1.0, 3.0, 2.0)}


def camp_logits(traits: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Per-person logits over the six opinion camps from their demographics (plus noise)."""
    n = len(traits["AGE"])
    right = (traits["POLPARTY"] == 0) * 1.2 - (traits["POLPARTY"] == 1) * 1.2 + (2 - traits["POLIDEOLOGY"]) * 0.6
    devout = (2.5 - traits["RELIGATTEND"]) * 0.5
    young = (1.5 - traits["AGE"]) * 0.5
    educated = (traits["EDUCATION"] - 2.5) * 0.35
    urban_west = (traits["CREGION"] == 3) * 0.4 - (traits["CREGION"] == 2) * 0.3
    logits = np.stack(
        [
            1.2 * right + 0.9 * devout,           # religious conservatives
            1.3 * right - 0.4 * educated,         # economic populists
            -1.2 * right + 0.7 * educated,        # educated progressives
            -0.9 * right + 0.8 * young,           # young progressives
            0.6 * young + 0.7 * educated + urban_west,  # tech libertarians
            -0.4 * np.abs(right) - 0.3 * educated,      # disengaged moderates
        ],
        axis=1,
    )
    return logits + rng.gumbel(size=(n, N_CAMPS)) * 0.9


def sample_traits(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Trait option indices per person; ideology follows party, income follows education."""
    codes = {name: rng.choice(len(opts), size=n, p=np.asarray(p) / sum(p)) for name, (opts, p) in TRAITS.items()}
    lean = np.select([codes["POLPARTY"] == 0, codes["POLPARTY"] == 1], [-1.3, 1.3], 0.0)
    codes["POLIDEOLOGY"] = np.clip(np.rint(2 + lean + rng.normal(0, 0.9, n)), 0, 4).astype(int)
    codes["INCOME"] = np.clip(np.rint(codes["EDUCATION"] * 0.6 + rng.normal(0.5, 1.1, n)), 0, 4).astype(int)
    return codes


def question_specs(n_questions: int):
    """(key, block, item text) of each question: the 60 built-in ones, then (for larger surveys)
    numbered variants of the same blocks."""
    specs = [(f"DEMO{block + 1:02d}{'ABCD'[number]}", block, item) for block, b in enumerate(QUESTION_BLOCKS) for number, item in enumerate(b[4])]
    for extra in range(n_questions - len(specs)):
        block, number = extra % len(QUESTION_BLOCKS), (extra // len(QUESTION_BLOCKS)) % 4
        specs.append((f"DEMOX{extra + 1:05d}", block, f"{QUESTION_BLOCKS[block][4][number]} (variant {extra // 60 + 1})"))
    return specs[:n_questions]


def make_questions(rng: np.random.Generator, n_questions: int = BUILT_IN_QUESTIONS, waves: list[str] | None = None):
    """Questions with their latent loadings, intercepts and ordered-logit cut points."""
    questions, loadings, intercepts, cuts = [], [], [], []
    for number, (key, block, item) in enumerate(question_specs(n_questions)):
        topic, dim, stem, options, _ = QUESTION_BLOCKS[block]
        listed = NOMINAL_ORDER.get(block, tuple(float(i + 1) for i in range(len(options))))
        loading = rng.normal(0, 0.35, len(LATENT_DIMS))
        loading[dim] = rng.choice([-1, 1]) * rng.uniform(1.3, 2.2)
        questions.append(Question(key, waves[number] if waves else "DEMO", stem.format(item), options, listed, topic))
        loadings.append(loading)
        intercepts.append(rng.normal(0, 0.8))
        cuts.append(np.sort(rng.normal(0, 1.6, len(options) - 1)) + np.linspace(-0.8, 0.8, len(options) - 1))
    return questions, np.asarray(loadings), np.asarray(intercepts), cuts


def ordered_logit(scores: np.ndarray, cut_points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ordinal positions (0 = lowest) drawn from an ordered-logit model."""
    noisy = scores + rng.logistic(0, 0.8, len(scores))
    return np.searchsorted(cut_points, noisy)


@dataclass(frozen=True)
class DemoTruth:
    """The demo survey with the structure planted behind it (for tests of recovery)."""

    survey: Survey
    camps: pd.Series
    latent: np.ndarray


def load_demo(n_people: int = DEMO_PEOPLE, seed: int = DEMO_SEED, n_questions: int = BUILT_IN_QUESTIONS) -> Survey:
    """The demo survey (same output for the same arguments)."""
    return generate_demo(n_people, seed, n_questions).survey


@lru_cache(maxsize=4)
def generate_demo(n_people: int = DEMO_PEOPLE, seed: int = DEMO_SEED, n_questions: int = BUILT_IN_QUESTIONS) -> DemoTruth:
    """Generate the demo survey and its planted camps and latent opinions; treat as read-only.

    Up to 60 questions everyone belongs to one wave, ``DEMO``; larger surveys (e.g. OpinionQA's
    full size, 18,000 people x 1,476 questions) are cut into waves of about 150 questions, each
    person answering one wave's questions, so the answer matrix is as sparse as OpinionQA's."""
    rng = np.random.default_rng(seed)
    codes = sample_traits(n_people, rng)
    camps = camp_logits(codes, rng).argmax(axis=1)
    centres = rng.normal(0, 1.0, (N_CAMPS, len(LATENT_DIMS)))
    style = rng.normal(0, 0.4, n_people)
    latent = centres[camps] + rng.normal(0, 0.55, (n_people, len(LATENT_DIMS)))
    n_waves = 1 if n_questions <= BUILT_IN_QUESTIONS else -(-n_questions // WAVE_QUESTIONS)
    wave_names = ["DEMO"] if n_waves == 1 else [f"DEMO{w + 1}" for w in range(n_waves)]
    question_wave = [wave_names[j * n_waves // n_questions] for j in range(n_questions)]
    questions, loadings, intercepts, cuts = make_questions(rng, n_questions, question_wave if n_waves > 1 else None)
    ids = [f"DEMO:{i:05d}" for i in range(n_people)]
    form = rng.integers(0, 2, n_people)
    person_wave = np.arange(n_people) % n_waves
    respondent, question, option, value = [], [], [], []
    for j, q in enumerate(questions):
        audience = np.ones(n_people, bool) if j % 3 == 0 else form == j % 3 - 1
        if n_waves > 1:
            audience &= person_wave == wave_names.index(question_wave[j])
        asked = np.flatnonzero(audience & (rng.random(n_people) > 0.02))
        positions = ordered_logit(latent[asked] @ loadings[j] + intercepts[j] + style[asked], cuts[j], rng)
        by_position = np.argsort(np.argsort(q.ordinal))  # option index -> rank on the ordinal scale
        rank_to_option = np.argsort(by_position)
        chosen = rank_to_option[positions]
        respondent.extend(ids[i] for i in asked)
        question.extend([q.key] * len(asked))
        option.extend(chosen)
        value.extend(np.asarray(q.values)[chosen])
    people = pd.DataFrame(
        {"wave": np.asarray(wave_names)[person_wave], "weight": np.round(rng.lognormal(0, 0.35, n_people), 4)}, index=pd.Index(ids, name="respondent")
    )
    for name, (options, _) in TRAITS.items():
        labels = np.asarray(options, dtype=object)[codes[name]]
        labels[rng.random(n_people) < 0.01] = "Refused"
        people[name] = labels
    traits = {name: options for name, (options, _) in TRAITS.items()}
    survey = Survey("demo", {q.key: q for q in questions}, traits, people, responses_frame(respondent, question, option, value))
    return DemoTruth(survey, pd.Series(camps, index=people.index, name="camp"), latent)
