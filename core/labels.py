"""The seven HAM10000 diagnostic classes, in the fixed order every model output uses."""

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
NUM_CLASSES = len(CLASSES)
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}
MEL = CLASS_INDEX["mel"]

CLASS_NAMES = {
    "akiec": "Actinic keratoses / intraepithelial carcinoma",
    "bcc": "Basal cell carcinoma",
    "bkl": "Benign keratosis-like lesions",
    "df": "Dermatofibroma",
    "mel": "Melanoma",
    "nv": "Melanocytic nevi",
    "vasc": "Vascular lesions",
}
MALIGNANT = frozenset({"akiec", "bcc", "mel"})

# Column names of the per-class probabilities in predictions_*.csv.
PROB_COLUMNS = tuple(f"p_{name}" for name in CLASSES)
