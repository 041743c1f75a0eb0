"""Zero-shot prompts per data set: the configured templates, or the official UCAT code's own.

``prompt.source: templates`` formats every class name of ``ucat.data.classnames(name)`` with
every template of ``prompt.templates`` (several = CLIP's ensemble).  ``prompt.source: official``
gives, per data set, exactly the one prompt per class the official UCAT code
(github.com/VivienLu/UCAT) builds: a set's own template where its dataset class defines
``clip_prompts``, else ``"This is a photo of a {}"`` over ``refine_classname`` of the class names
the code reads (``utils.py:234-280``).  ``OFFICIAL`` is the one table of those rules; file:line
citations are to that repository, ``replace/datasets/`` abbreviated ``ds/``.  ``ucat prompts NAME``
prints them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import ConfigError

DEFAULT_TEMPLATE = "This is a photo of a {}"   # main.py:226, utils.py:234/253


def refine_classname(name: str) -> str:
    """Official ``utils.refine_classname`` (utils.py:19-22): lower case; ``_``, ``-``, ``/`` -> space."""
    return name.lower().replace("_", " ").replace("-", " ").replace("/", " ")


def _lower_us_dash(name: str) -> str:
    """The rule inside most ``clip_prompts`` (e.g. ds/dtd.py:82): lower case; ``_``, ``-`` -> space."""
    return name.lower().replace("_", " ").replace("-", " ")


# torchvision's Flowers-102 names where the official list (ds/flowers102.py:43-60) differs, verbatim
# (its trailing spaces reach the prompts)
FLOWERS_OFFICIAL_EDITS = {11: "colts foot", 87: "cyclamen ", 90: "hippeastrum "}


def _flowers_names(_: str) -> list[str]:
    from torchvision.datasets import Flowers102

    names = list(Flowers102.classes)
    for index, name in FLOWERS_OFFICIAL_EDITS.items():
        names[index] = name
    return names


def _ids(name: str) -> list[str]:
    from .data import real

    ids = real.class_ids(name)
    if ids is None:
        raise ConfigError(f"{name}: no class identifiers on record")
    return ids


def _wnid_names(name: str) -> list[str]:
    """The official code's ImageNet names (ILSVRC's map_clsloc.txt, third column): each wnid's first
    WordNet lemma with spaces as ``_``.  Read from timm's synset-to-lemma table (timm ships with
    open_clip); equal to the official file for all 1000 wnids (checked when this was written)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.label_name_to_description(w).split(",")[0].strip().replace(" ", "_") for w in _ids(name)]


def _pets_names(name: str) -> list[str]:
    # ds/oxford_iiit_pet.py:79-85 title-cases the breed of the file names ("American Bulldog"),
    # which are ucat's Oxford-Pets names; the prompt rule lower-cases them again.
    from .data import classnames

    return classnames(name)


@dataclass(frozen=True)
class Official:
    template: str | None          # None: fixed prompts
    rule: str                     # the class-name rule, in words (docs/prompts.md)
    source: str                   # where the official code does it
    names: Callable[[str], list[str]] | None = None   # raw class names in ucat's label order
    refine: Callable[[str], str] = refine_classname
    fixed: tuple[str, ...] = ()


_FOLDERS = "refine_classname (lower; _ - / -> space)"
OFFICIAL: dict[str, Official] = {
    "tinyimagenet": Official(DEFAULT_TEMPLATE, "wnid -> map_clsloc name, then " + _FOLDERS,
                             "utils.py:159, 222, 242-249, 270-277 (+ tinyimagenet_classes_name.txt)", _wnid_names),
    "imagenet": Official(DEFAULT_TEMPLATE, "wnid -> map_clsloc name, then " + _FOLDERS,
                         "utils.py:216, 264-269, 276-277 (+ imagenet_classes_names.txt)", _wnid_names),
    "cifar10": Official(DEFAULT_TEMPLATE, "torchvision class, " + _FOLDERS, "utils.py:168, 260, 276-277", _ids),
    "cifar100": Official(DEFAULT_TEMPLATE, "torchvision class, " + _FOLDERS, "utils.py:171, 260, 276-277", _ids),
    "stl10": Official(DEFAULT_TEMPLATE, "torchvision class, " + _FOLDERS, "utils.py:180, 260, 276-277", _ids),
    "caltech101": Official(DEFAULT_TEMPLATE, "category folder (Faces, Faces_easy, ...), " + _FOLDERS,
                           "utils.py:174, 262, 276-277; ds/caltech.py:55-56", _ids),
    "sun397": Official(DEFAULT_TEMPLATE, "ClassName.txt line[3:] (e.g. apartment_building/outdoor), " + _FOLDERS,
                       "utils.py:183, 260, 276-277; ds/sun397.py:46-47", _ids),
    "caltech256": Official("A photo of a {}.", "folder minus 'NNN.' and '-101'; lower; _ - -> space; strip",
                           "ds/caltech.py:175, 200-209", _ids,
                           lambda s: s[4:].replace("-101", "").lower().replace("_", " ").replace("-", " ").strip()),
    "dtd": Official("A surface with a {} texture.", "folder; lower; _ - -> space", "ds/dtd.py:43, 79-84",
                    _ids, _lower_us_dash),
    "eurosat": Official("A centered satellite photo of {}.",
                        "its own phrases (annual crop land, a forest, ...), label order", "ds/eurosat.py:21-32, 40, 55-59",
                        lambda _: ["annual crop land", "a forest", "brushland or shrubland", "a highway or a road",
                                   "industrial buildings", "pasture land", "permanent crop land",
                                   "residential buildings", "a river", "a sea or a lake"], _lower_us_dash),
    "fgvc_aircraft": Official("A photo of a {}, a type of aircraft.",
                              "variants.txt; 'Boeing ' before variants starting with 7; lower; _ -> space ('-' kept)",
                              "ds/fgvc_aircraft.py:50, 85-86, 104-115", _ids,
                              lambda s: ("Boeing " + s if s[0] == "7" else s).lower().replace("_", " ")),
    "flowers102": Official("A photo of a {}, a type of flower.", "its own _classes list (torchvision's but for 3 names); lower; _ - -> space",
                           "ds/flowers102.py:43-60, 69, 98-102", _flowers_names,
                           _lower_us_dash),
    "food101": Official("A photo of {}, a type of food.", "meta/*.json keys (apple_pie); lower; _ - -> space",
                        "ds/food101.py:42, 61, 70-74", _ids, _lower_us_dash),
    "oxford_pets": Official("A photo of a {}, a type of pet.", "title-cased breed; lower; _ - -> space",
                            "ds/oxford_iiit_pet.py:49, 79-85, 91-95", _pets_names, _lower_us_dash),
    "stanford_cars": Official("A photo of a {}.", "cars_meta.mat name minus its last 5 chars (' 2012'); lower; _ - -> space",
                              "ds/stanford_cars.py:39, 74, 77-81", _ids, lambda s: _lower_us_dash(s[:-5])),
    "coco2017": Official(DEFAULT_TEMPLATE, "category name of instances_val2017.json (id order), " + _FOLDERS
                         + " (no change: the names are lower case); the set's own 'a photo of a {}.' "
                         "(class_prompts) is never read",
                         "main-multilabel.py:328, 356; utils.py:218-220, 253-280; ds/coco_multilabel_2017.py:84-91",
                         _ids),
    "pcam": Official(None, "two fixed prompts, verbatim (first one spelled 'Tthis')", "ds/pcam.py:69-72",
                     fixed=("Tthis is a photo of healthy lymph node tissue.",
                            "This is a photo of lymph node tumor tissue.")),
}


def official_prompts(name: str) -> list[str]:
    """The official code's prompt for each class of ``name``, in ucat's label order."""
    if name not in OFFICIAL:
        raise ConfigError(f"prompt.source: official: the official code defines no prompts for {name!r} "
                          f"(it has them for {', '.join(sorted(OFFICIAL))}); use prompt.source: templates")
    spec = OFFICIAL[name]
    if spec.template is None:
        return list(spec.fixed)
    return [spec.template.format(spec.refine(n)) for n in spec.names(name)]


def class_prompts(name: str, params: dict, classnames: list[str] | None = None) -> list[list[str]]:
    """Per class (label order) the prompts whose normalised mean embedding is the class's text feature."""
    from . import data

    names = list(classnames) if classnames is not None else data.classnames(name)
    if params["prompt"].get("source", "templates") == "official":
        out = [[p] for p in official_prompts(name)]
        if len(out) != len(names):
            raise ConfigError(f"{name}: {len(out)} official prompts for {len(names)} classes")
        return out
    return [[t.format(c) for t in params["prompt"]["templates"]] for c in names]


def template_prompts(name: str, params: dict, template: str, classnames: list[str] | None = None) -> list[list[str]]:
    """One prompt per class (label order): ``template`` over the class names :func:`class_prompts` uses
    (under ``prompt.source: official`` the official code's refined names).  Comp-TGA's non-class
    prompts ("This is not a photo of a {}" over ``refine_classname``: Comp-TGA.py:235; utils.py:230-247)."""
    from . import data

    if params["prompt"].get("source", "templates") == "official":
        spec = OFFICIAL.get(name)
        if spec is None or spec.template is None:
            raise ConfigError(f"comp_tga.negative_template: the official prompts of {name!r} are fixed sentences, "
                              "not a template over class names; use prompt.source: templates")
        return [[template.format(spec.refine(n))] for n in spec.names(name)]
    names = list(classnames) if classnames is not None else data.classnames(name)
    return [[template.format(c)] for c in names]
