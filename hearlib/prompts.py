"""The prompts of the paper: the task prompt (§3) and the nine alternatives of appendix C.3; and the
organism's other question types (colour, position, kind; docs/ORGANISM.md), used by :mod:`hearlib.records.questions`."""

PAPER_PROMPT = "What is the main object in the image? Please answer with a single word."

# Appendix C.3, verbatim (prompt 9 has a typographic apostrophe).
ALTERNATIVE_PROMPTS = (
    "Identify the primary subject in this picture with a single word.",
    "Please specify the key item in this image using one word only.",
    "Please give me the main subject in this picture, stated in a single word.",
    "Provide a one-word term for the principal object depicted here.",
    "In one word, what is the primary focus of the photo?",
    "Name the primary element in the photo, limiting your answer to one word.",
    "Which single word best describes the main subject of this picture?",
    "Using a single word, name the object that stands out the most in this image.",
    "Offer the primary object\u2019s name from the picture, restricted to a single word.",
)

# The organism's other questions about the same image (docs/ORGANISM.md, "Question types").
COLOR_PROMPT = "What color is the main object? Please answer with a single word."
POSITION_PROMPT = "Where is the main object in the image? Please answer with a single word."
KIND_PROMPT = "What kind of thing is the main object? Please answer with a single word."
