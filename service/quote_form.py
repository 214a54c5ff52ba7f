"""The staff quote form: the inputs a feature schema makes, and the order a posted form makes.

Inputs follow the schema (`form_fields`): a select per category; for numbers, a yes/no
checkbox when training saw only 0 and 1, a whole number from the training minimum for a count,
else any number. `read_form` turns a posted form into the same `QuoteRequest` the API takes,
refusing what staff could not have meant in the words they read (`ShopWords`: the spec's
`[labels]` and `[shop]`, else the raw code made readable).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import JsonValue, ValidationError
from starlette.datastructures import FormData

from models.features import FeatureSchema, NumericFeature, count_problem
from service.bundles import Serving
from service.schemas import QuoteRequest

FEATURE_PREFIX = "feature:"


@dataclass(frozen=True, slots=True)
class ShopWords:
    """What the pages call the model's features and options, and the shop's name and phone:
    from the bundle's manifest (`[labels]` and `[shop]` in the spec), else the raw code made
    readable (`anti_reflective` -> "Anti reflective")."""

    features: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    shop_name: str | None = None
    shop_phone: str | None = None

    @classmethod
    def of(cls, info: Mapping[str, Any]) -> ShopWords:
        """The words a manifest's info carries (none for bundles made before they did)."""
        labels = info.get("labels")
        labels = labels if isinstance(labels, Mapping) else {}
        shop = info.get("shop")
        shop = shop if isinstance(shop, Mapping) else {}
        features = labels.get("features")
        options = labels.get("options")
        return cls(
            features=_strings(features),
            options=(
                {str(k): _strings(v) for k, v in options.items()}
                if isinstance(options, Mapping)
                else {}
            ),
            shop_name=_optional_text(shop.get("name")),
            shop_phone=_optional_text(shop.get("phone")),
        )

    def feature(self, name: str) -> str:
        return self.features.get(name) or readable(name)

    def option(self, feature: str, value: str) -> str:
        return self.options.get(feature, {}).get(value) or readable(value)


def shop_words(serving: Serving | None) -> ShopWords:
    """The words of the served bundle (the readable raw codes without one)."""
    return ShopWords.of(serving.bundle.manifest.info) if serving else ShopWords()


def _strings(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str) and v}


def _optional_text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


@dataclass
class FormField:
    """One input of the quote form: a select (`category`), a yes/no checkbox (`yes_no`: only 0
    and 1 in training), a whole number from the training minimum (`count`) or any `number`."""

    id: str
    name: str
    label: str
    kind: str
    options: list[tuple[str, str]] = field(default_factory=list)  # (value, what staff read)
    value: str = ""
    hint: str = ""
    error: str | None = None
    minimum: str = ""


@dataclass
class Submission:
    """A posted form: the request it makes (None when unreadable), the raw values, problems."""

    request: QuoteRequest | None
    values: dict[str, str]
    reference: str
    problems: list[tuple[str, str]]


def form_fields(
    schema: FeatureSchema,
    words: ShopWords,
    values: Mapping[str, str],
    by_field: Mapping[str, str],
) -> list[FormField]:
    """The form's inputs for a feature schema, with what was typed and each field's problem."""
    fields = []
    for i, cat in enumerate(schema.categorical):
        fields.append(
            FormField(
                id=f"feature-{i}",
                name=FEATURE_PREFIX + cat.name,
                label=words.feature(cat.name),
                kind="category",
                options=[(value, words.option(cat.name, value)) for value in sorted(cat.known)],
                value=values.get(cat.name, ""),
                error=by_field.get(f"order.{cat.name}"),
            )
        )
    offset = len(schema.categorical)
    for i, num in enumerate(schema.numeric):
        fields.append(_number_field(f"feature-{offset + i}", num, words, values, by_field))
    return fields


def read_form(
    form: FormData, schema: FeatureSchema, store_field: str, words: ShopWords | None = None
) -> Submission:
    """The quote request a posted form makes, keeping what was typed for a second try.

    The store (`store_field`, when the model takes it) is required, and so is at least one
    other feature: a blank form would store a real promise made from nothing. A count is a
    whole number no lower than training's lowest; a number the model never saw the like of is
    refused in the words staff read (the API's `InputError` names the raw field)."""
    words = words or ShopWords()
    values: dict[str, str] = {}
    order: dict[str, JsonValue] = {}
    problems: list[tuple[str, str]] = []
    for cat in schema.categorical:
        text = form_text(form.get(FEATURE_PREFIX + cat.name))
        values[cat.name] = text
        order[cat.name] = text or None
    yes_no = set()
    for num in schema.numeric:
        text = form_text(form.get(FEATURE_PREFIX + num.name))
        values[num.name] = text
        if is_yes_no(num):
            # A checkbox posts "1" when ticked and nothing when not: not ticked is "no".
            yes_no.add(num.name)
            order[num.name] = 1.0 if text else 0.0
            continue
        number = _number(text)
        problem = _number_problem(num, text, number, words.feature(num.name))
        if problem is not None:
            problems.append((f"order.{num.name}", problem))
        order[num.name] = number
    if store_field in order and order[store_field] is None:
        problems.append((f"order.{store_field}", f"choose the {words.feature(store_field)}"))
    described = [
        name
        for name, value in order.items()
        if value is not None and name != store_field and not (name in yes_no and value == 0)
    ]
    if order and not described and not problems:
        problems.append(("order", "fill in the order's details: the form is empty"))
    reference = form_text(form.get("reference"))
    values["customer_name"] = form_text(form.get("customer_name"))
    values["customer_phone"] = form_text(form.get("customer_phone"))
    customer = None
    if values["customer_name"] or values["customer_phone"]:
        customer = {
            "name": values["customer_name"] or None,
            "phone": values["customer_phone"] or None,
        }
    try:
        request = QuoteRequest.model_validate(
            {"order": order, "reference": reference or None, "customer": customer}
        )
    except ValidationError as err:
        for item in err.errors():
            where = ".".join(str(part) for part in item["loc"])
            problems.append((where, str(item["msg"]).removeprefix("Value error, ")))
        request = None
    return Submission(request=request, values=values, reference=reference, problems=problems)


def is_yes_no(num: NumericFeature) -> bool:
    """Whether training saw this feature only as 0 and 1: a yes/no question (a checkbox)."""
    return num.is_yes_no


def _number_problem(num: NumericFeature, text: str, number: float | None, label: str) -> str | None:
    """What is wrong with a typed number, in the words staff read (None: nothing)."""
    if not text:
        return None
    if number is None or not math.isfinite(number):
        return f"{label} must be a number"
    problem = count_problem(num, number, label)  # the API's rule, in the words staff read
    if problem is not None:
        return problem
    if number < num.far_low or number > num.far_high:
        return (
            f"{label} {number:g} is far from anything this shop has seen ({num.low:g} to "
            f"{num.high:g}): please check it"
        )
    return None


def _number_field(
    field_id: str,
    num: NumericFeature,
    words: ShopWords,
    values: Mapping[str, str],
    by_field: Mapping[str, str],
) -> FormField:
    kind, hint, minimum = "number", f"Usually {num.low:g} to {num.high:g}", ""
    if is_yes_no(num):
        kind, hint = "yes_no", ""
    elif num.is_integer:
        kind, minimum = "count", f"{num.low:g}"
        hint = f"A whole number, usually {num.low:g} to {num.high:g}"
    return FormField(
        id=field_id,
        name=FEATURE_PREFIX + num.name,
        label=words.feature(num.name),
        kind=kind,
        value=values.get(num.name, ""),
        hint=hint + ("; leave empty if not known" if hint else ""),
        error=by_field.get(f"order.{num.name}"),
        minimum=minimum,
    )


def ordered_items(
    features: Mapping[str, Any], words: ShopWords, yes_no: Collection[str] = ()
) -> list[tuple[str, str]]:
    """What was ordered, as the customer reads it: (label, value) for each feature given, in
    the order the quote was asked with; a `yes_no` feature reads "Yes" or "No"."""
    items = []
    for name, value in features.items():
        if value is None or value == "":
            continue
        if name in yes_no:
            text = "Yes" if value else "No"
        elif isinstance(value, int | float):
            text = f"{value:g}"
        else:
            text = words.option(name, str(value))
        items.append((words.feature(name), text))
    return items


def form_text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _number(text: str) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def readable(name: str) -> str:
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else name
