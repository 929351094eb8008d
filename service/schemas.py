"""Request and response models.

Request models validate the envelope (activation name, parameters, axis,
unknown fields) in pydantic's strict mode: a boolean or a string is never
taken for a number.  The arrays ``x`` and ``grad`` are typed loosely here and
converted by :mod:`service.codec`, which checks them at C speed and names the
offending element.  Names, enums and examples all come from the registry.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from . import activations
from .activations import Activation
from .activations.registry import MAX_CHANNELS
from .codec import MAX_DEPTH, kind

NUMBER_ARRAY_REF = {"$ref": "#/components/schemas/NumberArray"}


def _nested(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number"}
    for _ in range(levels):
        schema = {"type": "array", "minItems": 1, "items": schema}
    return schema


#: The schema of ``x``, ``grad`` and every returned array: a number or nested lists of numbers,
#: spelled out level by level up to MAX_DEPTH (code generators do not follow a recursive schema).
NUMBER_ARRAY_SCHEMA: dict[str, Any] = {
    "title": "NumberArray",
    "description": "A finite number, or a non-empty rectangular nested list of finite numbers "
    f"(an N-dimensional array, at most {MAX_DEPTH} levels deep).",
    "anyOf": [_nested(levels) for levels in range(MAX_DEPTH + 1)],
}


def _param_value(value: Any) -> float | list[float]:
    """An activation parameter: a finite number, or an array of finite numbers (rational's
    coefficients); one clear error, not one per branch of a union."""

    def number(v: Any, inside: bool = False) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            wanted = "a number" if inside else "a number (or, for an array parameter, an array of numbers)"
            raise PydanticCustomError("param", f"must be {wanted}, not {_described(v)}")
        if not math.isfinite(v):
            raise PydanticCustomError("param", "must be a finite number")
        if isinstance(v, int) and abs(v) > 2**53:
            # beyond 2^53 an integer is not a float64 number: 2^53 + 1 would be taken for 2^53
            raise PydanticCustomError("param", "is an integer beyond 2^53, which float64 cannot hold exactly")
        return float(v)

    if isinstance(value, list):
        if len(value) > MAX_PARAM_LENGTH:
            raise PydanticCustomError(
                "param", f"has {len(value)} numbers; an array parameter takes at most {MAX_PARAM_LENGTH:,}"
            )
        out = []
        for k, v in enumerate(value):
            try:
                out.append(number(v, inside=True))
            except PydanticCustomError as exc:
                raise PydanticCustomError("param", f"[{k}] {exc.message()}") from None
        return out
    return number(value)


def _described(v: Any) -> str:
    """What a parameter's value is (codec.kind), with the usual mistake's remedy."""
    hint = {bool: " (true/false)", str: " (write the number without quotes)"}.get(type(v), "")
    return kind(v) + hint


#: The most numbers an array parameter may be sent with (rational takes at most 9, prelu one a
#: channel).
MAX_PARAM_LENGTH = MAX_CHANNELS

#: A parameter's value in a request.
ParamValue = Annotated[
    float | list[float],
    PlainValidator(_param_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number"},
                {"type": "array", "items": {"type": "number"}, "maxItems": MAX_PARAM_LENGTH},
            ],
            "description": "A number, or an array of numbers for an array parameter (rational's "
            "numerator and denominator).",
        }
    ),
]


def _aliases() -> str:
    return "; ".join(
        f"{entry.name}: {', '.join(entry.aliases)}" for entry in activations.entries() if entry.aliases
    )


#: The schema of an activation's name: the canonical names (aliases are accepted as well).
ACTIVATION_NAME_SCHEMA: dict[str, Any] = {
    "type": "string",
    "enum": activations.names(),
    "description": "The canonical name; the aliases of PyTorch, JAX and Keras are accepted as well "
    f"(GET /activations lists them): {_aliases()}.",
}


def _known_activation(name: str) -> str:
    try:
        activations.get(name)
    except activations.UnknownActivation as exc:
        raise PydanticCustomError("unknown_activation", exc.reason) from None
    return name


ActivationName = Annotated[
    str,
    AfterValidator(_known_activation),
    WithJsonSchema(ACTIVATION_NAME_SCHEMA),
]
# allOf: pydantic resolves a bare $ref that has sibling keys, and this one lives in components.
NumberArray = Annotated[Any, WithJsonSchema({"allOf": [NUMBER_ARRAY_REF]})]


def _without_default(schema: dict[str, Any]) -> None:
    # Leaving a field out is how "absent" is said; null is not accepted, so the
    # schema must not advertise a null default.
    schema.pop("default", None)


class ActivateRequest(BaseModel):
    """Evaluate an activation at every element of ``x``."""

    model_config = ConfigDict(extra="forbid", strict=True, title="ActivateRequest")

    activation: ActivationName
    x: NumberArray = Field(description="The input: a number or a rectangular nested list (N-D array).")
    params: dict[str, ParamValue] = Field(
        default_factory=dict,
        description="Parameters of the activation by name; omitted ones take their defaults "
        "(see GET /activations). The response echoes every parameter used.",
    )
    axis: int = Field(
        default=-1,
        description=(
            "Vector functions (softmax) work along this axis of x, and a per-channel parameter (prelu's "
            "weight array) is applied along it; elementwise functions otherwise ignore it."
        ),
    )
    dtype: Literal["float64", "float32", "float16", "bfloat16"] = Field(
        default="float64",
        description="The format of the numbers: x is rounded to it, and the result is written in it "
        "(as the shortest decimal that round-trips). Every result of every function, in every format, "
        "is the correctly rounded true value (to nearest, ties to even).",
    )


class DerivativeRequest(ActivateRequest):
    """Differentiate an activation at the input ``x``.

    The derivative is taken at the input x, never at an already-activated value.
    """

    model_config = ConfigDict(extra="forbid", strict=True, title="DerivativeRequest")

    grad: NumberArray | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_without_default,
        description="Upstream gradient dL/dy with y's shape (x's shape except for glu, which halves "
        "the axis). When given, the response holds grad_x = g^T J (the vector-Jacobian product "
        "backpropagation needs) instead of dydx, or grad_params with wrt=params.",
    )

    order: Literal[1, 2] = Field(
        default=1,
        description="2: the second derivative d2ydx2 (elementwise functions only; not with grad).",
    )
    wrt: Literal["x", "params"] = Field(
        default="x",
        description="params: derivatives with respect to the function's parameters instead of x: "
        "dydparams (each with y's shape), or with grad the scalars grad_params = sum(g * dy/dtheta).",
    )

    @field_validator("order", mode="before")
    @classmethod
    def _an_integer(cls, value: Any) -> Any:
        # Literal[1, 2] alone takes True for 1 and 2.0 for 2: an order is an integer.
        if type(value) is not int:
            raise PydanticCustomError("int_type", "must be the integer 1 or 2")
        return value

    @field_validator("grad")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Runs only when grad is sent: leaving it out is fine, an explicit null is not.
        if value is None:
            raise PydanticCustomError("null", "must be a number or a nested list of numbers, not null")
        return value


class CheckRequest(BaseModel):
    """Results of another implementation, to compare with the correctly rounded ones."""

    model_config = ConfigDict(extra="forbid", strict=True, title="CheckRequest")

    activation: ActivationName
    params: dict[str, ParamValue] = Field(
        default_factory=dict,
        description="Parameters of the activation by name; omitted ones take their defaults.",
    )
    quantity: Literal["value", "derivative", "second_derivative"] = Field(
        default="value", description="What y holds: f(x), f'(x) or f''(x)."
    )
    dtype: Literal["float64", "float32", "float16", "bfloat16"] = Field(
        default="float64",
        description="The format x and y are numbers of; errors are measured in its units in the last place.",
    )
    x: NumberArray = Field(description="The inputs, numbers of dtype.")
    y: NumberArray = Field(description="What the implementation under test returned for x, x's shape.")


def _sent_not_null(value: Any) -> Any:
    # Runs only when the field is sent: leaving it out is how "absent" is said, null is refused.
    if value is None:
        raise PydanticCustomError("null", "must not be null (leave it out instead)")
    return value


class ProfileRequest(BaseModel):
    """An elementwise activation under Gaussian inputs, and optionally in a deep random network."""

    model_config = ConfigDict(extra="forbid", strict=True, title="ProfileRequest")

    activation: ActivationName
    params: dict[str, ParamValue] = Field(
        default_factory=dict,
        description="Parameters of the activation by name; omitted ones take their defaults.",
    )
    mean: float = Field(default=0.0, ge=-1e6, le=1e6, description="The mean of the Gaussian input z.")
    std: float = Field(
        default=1.0, gt=0.0, le=1e6, description="The standard deviation of the Gaussian input z (> 0)."
    )
    sigma_w: Annotated[float, Field(ge=1e-3, le=1e3)] = Field(  # type: ignore[assignment]  # absent: None; null is refused
        default=None,
        json_schema_extra=_without_default,
        description="The weights' standard deviation times sqrt(fan_in) of a deep random network: "
        "with it, the answer holds the mean-field quantities (Poole et al. 2016).",
    )
    sigma_b: float = Field(default=0.0, ge=0.0, le=1e3, description="The biases' standard deviation.")
    depth: Annotated[int, Field(ge=1, le=100_000)] = Field(  # type: ignore[assignment]  # absent: None; null is refused
        default=None,
        json_schema_extra=_without_default,
        description="With sigma_w: the number of layers, for the expected gradient ratio chi1^depth.",
    )

    @field_validator("sigma_w", "depth", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        return _sent_not_null(value)


class SimulateRequest(BaseModel):
    """A random fully connected network, run forward and backward on Gaussian inputs."""

    model_config = ConfigDict(extra="forbid", strict=True, title="SimulateRequest")

    activation: ActivationName
    params: dict[str, ParamValue] = Field(
        default_factory=dict,
        description="Parameters of the activation by name; omitted ones take their defaults.",
    )
    width: int = Field(default=128, ge=1, le=1024, description="Units in every layer (and inputs).")
    depth: int = Field(default=20, ge=1, le=500, description="Layers.")
    batch: int = Field(default=64, ge=1, le=4096, description="Gaussian input vectors.")
    init: Literal["he", "xavier", "lecun", "critical", "explicit"] = Field(
        default="he",
        description="Weight variance sigma_w^2/fan_in: he 2, xavier and lecun 1 (square layers), "
        "critical: the sigma_w where chi1 = 1 at sigma_b (the edge of chaos), explicit: sigma_w.",
    )
    sigma_w: Annotated[float, Field(ge=1e-3, le=1e3)] = Field(  # type: ignore[assignment]  # absent: None; null is refused
        default=None,
        json_schema_extra=_without_default,
        description="With init explicit (required there): the weights' standard deviation times sqrt(width).",
    )
    sigma_b: float = Field(default=0.0, ge=0.0, le=1e3, description="The biases' standard deviation.")
    seed: int = Field(
        default=0, ge=0, le=2**63 - 1, description="The seed: the same request, the same numbers."
    )

    @field_validator("sigma_w", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        return _sent_not_null(value)


class FitTarget(BaseModel):
    """An activation whose values at x are the targets."""

    model_config = ConfigDict(extra="forbid", strict=True, title="FitTarget")

    activation: ActivationName
    params: dict[str, ParamValue] = Field(default_factory=dict, description="Its parameters.")


class FitRequest(BaseModel):
    """Fit an activation's parameters to samples: x and y, or x and a target activation."""

    model_config = ConfigDict(extra="forbid", strict=True, title="FitRequest")

    activation: ActivationName
    params: dict[str, ParamValue] = Field(
        default_factory=dict,
        description="Starting values (omitted ones start at their defaults); parameters not fitted keep them.",
    )
    fit: list[str] = Field(  # absent: None; null is refused
        default=None,  # type: ignore[arg-type]
        json_schema_extra=_without_default,
        max_length=64,
        description="The parameters to fit, by name (default: all of them).",
    )
    x: NumberArray = Field(description="The sample points (any shape; flattened).")
    y: NumberArray | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_without_default, description="The target values at x, x's shape."
    )
    target: FitTarget = Field(  # type: ignore[assignment]  # absent: None; null is refused
        default=None,
        json_schema_extra=_without_default,
        description="Instead of y: an activation whose (correctly rounded) values at x are the targets.",
    )
    max_iterations: int = Field(
        default=200, ge=1, le=2000, description="At most this many evaluations of the residuals."
    )

    @field_validator("fit", "y", "target", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        return _sent_not_null(value)


# -- responses ----------------------------------------------------------------------


class _Result(BaseModel):
    activation: str = Field(description="The canonical name of the activation.")
    params: dict[str, float | list[float]] = Field(
        description="Every parameter used, defaults filled in (an array parameter as an array)."
    )
    dtype: Literal["float64", "float32", "float16", "bfloat16"] = Field(
        description="The floating-point type of the result."
    )
    shape: list[int] = Field(description="The shape of the returned array(s); [] for grad_params.")
    axis: int | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_without_default,
        description="Vector functions only: the (non-negative) axis used.",
    )


class ActivateResponse(_Result):
    y: NumberArray = Field(description="f(x), with x's shape.")


class DerivativeResponse(_Result):
    dydx: NumberArray | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_without_default,
        description="Without grad: f'(x) for elementwise functions (x's shape); for vector "
        "functions the Jacobian along the axis, shape x.shape + [n], "
        "dydx[..., i, ..., j] = dy_i/dx_j.",
    )
    grad_x: NumberArray | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_without_default,
        description="With grad: the vector-Jacobian product g^T J, x's shape.",
    )
    d2ydx2: NumberArray | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_without_default, description="With order 2: f''(x), x's shape."
    )
    dydparams: dict[str, NumberArray] | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_without_default,
        description="With wrt=params: dy/dtheta for each parameter, y's shape (an array parameter: "
        "y's shape and one more axis, the parameter's).",
    )
    grad_params: dict[str, float | list[float]] | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_without_default,
        description="With wrt=params and grad: sum(g * dy/dtheta) for each parameter (an array "
        "parameter: an array of its shape).",
    )


class CheckPoint(BaseModel):
    index: list[int] = Field(description="Where the point is in x.")
    x: float
    y: float = Field(description="The result given.")
    correct: float = Field(description="The correctly rounded result.")
    ulp: float = Field(description="|y - correct| in units in the last place of correct, in dtype.")


class CheckResponse(BaseModel):
    activation: str
    params: dict[str, float | list[float]]
    quantity: str
    dtype: str
    count: int
    correctly_rounded: int = Field(description="How many results equal the correctly rounded one.")
    max_ulp: float
    mean_ulp: float
    histogram: dict[str, int] = Field(
        description="How many results are off by 0 ULP, at most 0.5, 1, 2, 4, 16, 256 ULP, or more."
    )
    worst: list[CheckPoint] = Field(description="The largest errors, at most 20, largest first.")


class Moments(BaseModel):
    mean: float = Field(description="E[f(z)].")
    second_moment: float = Field(description="E[f(z)^2].")
    variance: float = Field(description="Var f(z).")
    derivative_mean: float = Field(description="E[f'(z)].")
    derivative_second_moment: float = Field(description="E[f'(z)^2].")
    dead: float = Field(description="P(f'(z) = 0): the share of dead units.")
    saturated: float = Field(description="P(|f'(z)| < 0.01): the share of saturated units.")


class Gain(BaseModel):
    value: float | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_without_default,
        description="1/sqrt(E[f(z)^2]) at z ~ N(0, 1): the weight scale (times 1/sqrt(fan_in)) that "
        "keeps the pre-activations' second moment at 1 (absent where E[f(z)^2] is 0 in float64).",
    )
    torch: float | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_without_default,
        description="What torch.nn.init.calculate_gain answers (absent where it has no answer).",
    )
    note: str = Field(description="Why the two differ, where they do.")


class MeanField(BaseModel):
    sigma_w: float
    sigma_b: float
    q_star: float | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_without_default,
        description="The fixed point of q -> sigma_w^2 E[f(sqrt(q) z)^2] + sigma_b^2 reached from q = 1 "
        "(absent if q grows without bound).",
    )
    chi1: float | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_without_default,
        description="sigma_w^2 E[f'(sqrt(q*) z)^2]: below 1 gradients vanish with depth, above 1 they explode.",
    )
    critical_sigma_w: float | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_without_default,
        description="The sigma_w where chi1 = 1 at this sigma_b (absent if chi1 does not reach 1 for "
        "sigma_w in [0.001, 1000]).",
    )
    depth: int | SkipJsonSchema[None] = Field(default=None, json_schema_extra=_without_default)
    gradient_ratio: float | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_without_default,
        description="chi1^depth: the expected ratio of squared gradient norms from the last layer to the first.",
    )
    note: str


class ProfileResponse(BaseModel):
    activation: str
    params: dict[str, float | list[float]]
    mean: float
    std: float
    moments: Moments = Field(description="Of f and f' at z ~ N(mean, std^2).")
    gain: Gain
    mean_field: MeanField | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_without_default, description="With sigma_w."
    )


class Layer(BaseModel):
    layer: int
    preactivation_mean: float
    preactivation_variance: float
    activation_mean: float
    activation_variance: float
    dead: float = Field(description="The share of units with f'(h) = 0.")
    saturated: float = Field(description="The share of units with |f'(h)| < 0.01.")
    gradient_rms: float = Field(
        description="The root mean square of dL/dh over the layer's units and the batch."
    )


class MeanFieldTrajectory(BaseModel):
    preactivation_second_moment: list[float] = Field(description="q_l, layer by layer.")
    activation_second_moment: list[float] = Field(description="E[f(sqrt(q_l) z)^2].")
    gradient_rms: list[float] = Field(description="The predicted root mean square of dL/dh.")


class SimulateResponse(BaseModel):
    activation: str
    params: dict[str, float | list[float]]
    width: int
    depth: int
    batch: int
    init: str
    sigma_w: float = Field(description="The sigma_w used (the init's).")
    sigma_b: float
    seed: int
    layers: list[Layer]
    mean_field: MeanFieldTrajectory = Field(
        description="What mean-field theory predicts for the same network."
    )


class FitResponse(BaseModel):
    activation: str
    params: dict[str, float | list[float]] = Field(description="The fitted parameters (and those held).")
    initial_params: dict[str, float | list[float]] = Field(description="Where the fit started.")
    fitted: list[str] = Field(description="The parameters fitted.")
    points: int
    loss: float = Field(description="The mean squared error at the fitted parameters.")
    max_abs_error: float = Field(description="max |f(x) - y| at the fitted parameters.")
    r2: float | SkipJsonSchema[None] = Field(
        default=None,
        json_schema_extra=_without_default,
        description="1 - SSE/SST (absent when y is constant and the fit is not exact).",
    )
    iterations: int = Field(description="Jacobian evaluations (trust-region iterations).")
    evaluations: int = Field(description="Evaluations of the residuals.")
    converged: bool = Field(description="Whether a convergence test was met (not the iteration limit).")
    message: str = Field(description="What stopped the solver.")


class FieldError(BaseModel):
    field: str = Field(
        description="The offending input, e.g. x[3] or params.negative_slope; empty for the request as a whole."
    )
    reason: str


class Problem(BaseModel):
    """The one error body of the service (RFC 9457 problem details)."""

    status: int
    title: str
    detail: str = Field(description="All field errors in one line.")
    errors: list[FieldError]


class Health(BaseModel):
    status: Literal["ok"]


# -- the catalog --------------------------------------------------------------------


class ParamInfo(BaseModel):
    name: str
    default: float | list[float]
    minimum: float | None
    maximum: float | None
    exclusive_minimum: bool
    choices: list[float] = Field(
        default_factory=list,
        description="The only values allowed, for a parameter that chooses a form (no derivative, not fitted).",
    )
    integer: bool = Field(default=False, description="A whole number (a seed): no derivative, not fitted.")
    length: list[int] | None = Field(
        default=None,
        description="An array parameter: the fewest and most numbers it takes (bounds apply to each).",
    )
    channels: bool = Field(
        default=False,
        description=(
            "A number, or an array of one number per channel: as long as x along axis, each "
            "element taking its channel's (bounds apply to each)."
        ),
    )
    description: str


class KinkInfo(BaseModel):
    at: float | str = Field(description="The point, or the parameter whose value it is.")
    derivative: float | str = Field(
        description="The derivative taken there, or the parameter whose value it takes."
    )
    note: str


class ExampleInfo(BaseModel):
    x: float | list[float]
    y: float | list[float]
    params: dict[str, float | list[float]]


class ActivationInfo(BaseModel):
    name: str
    kind: Literal["elementwise", "vector"]
    aliases: list[str]
    params: list[ParamInfo]
    formula: str = Field(description="LaTeX.")
    derivative_formula: str = Field(description="LaTeX.")
    range: str
    kinks: list[KinkInfo]
    typical_use: list[str]
    notes: list[str]
    reference: str
    examples: list[ExampleInfo]

    @classmethod
    def of(cls, entry: Activation) -> ActivationInfo:
        return cls(
            name=entry.name,
            kind=entry.kind,
            aliases=list(entry.aliases),
            params=[
                ParamInfo(
                    **{
                        **vars(p),
                        "choices": list(p.choices),
                        "default": list(p.default) if isinstance(p.default, tuple) else p.default,
                        "length": list(p.length) if p.length else None,
                    }
                )
                for p in entry.params
            ],
            formula=entry.formula,
            derivative_formula=entry.derivative_formula,
            range=entry.range,
            kinks=[KinkInfo(**vars(k)) for k in entry.kinks],
            typical_use=list(entry.typical_use),
            notes=list(entry.notes),
            reference=entry.reference,
            examples=[
                ExampleInfo(
                    x=list(e.x) if isinstance(e.x, tuple) else e.x,
                    y=list(e.y) if isinstance(e.y, tuple) else e.y,
                    params=dict(e.params),
                )
                for e in entry.examples
            ],
        )


class Catalog(BaseModel):
    activations: list[ActivationInfo]


# -- examples for the docs, derived from the registry ---------------------------------


def request_examples(derivative: bool = False) -> dict[str, dict[str, Any]]:
    """Named request examples for "Try it out" in /docs: featured ones, then one per activation."""
    examples: dict[str, dict[str, Any]] = {
        "leaky_relu_2d": {
            "summary": "leaky_relu on a 2x2 array with a custom slope",
            "value": {"activation": "leaky_relu", "x": [[-2, 0], [1, 3]], "params": {"negative_slope": 0.1}},
        }
    }
    if derivative:
        examples |= {
            "softmax_vjp": {
                "summary": "softmax vector-Jacobian product: exact where PyTorch and JAX give 0",
                "value": {"activation": "softmax", "x": [40, 0], "grad": [1, 0]},
            },
            "gelu_second": {
                "summary": "second derivative of gelu",
                "value": {"activation": "gelu", "x": [-1, 0, 1], "order": 2},
            },
            "elu_alpha": {
                "summary": "gradient of sum(g * elu(x)) with respect to alpha",
                "value": {"activation": "elu", "x": [-2, -1, 1], "wrt": "params", "grad": [1, 1, 1]},
            },
        }
    else:
        examples["sigmoid_float32"] = {
            "summary": "sigmoid in float32",
            "value": {"activation": "sigmoid", "x": [0.1, 1, 10], "dtype": "float32"},
        }
    for entry in activations.entries():
        plain = [e for e in entry.examples if not e.params]
        if entry.kind == "vector":
            x: Any = list(plain[0].x) if isinstance(plain[0].x, tuple) else plain[0].x
        else:
            x = [e.x for e in plain]
        examples[entry.name] = {
            "summary": f"{entry.name} of {x}",
            "value": {"activation": entry.name, "x": x},
        }
    return examples


def profile_examples() -> dict[str, dict[str, Any]]:
    """Request examples of POST /profile."""
    return {
        "tanh": {"summary": "tanh under N(0, 1)", "value": {"activation": "tanh"}},
        "relu_mean_field": {
            "summary": "relu in a deep network at He's initialisation",
            "value": {"activation": "relu", "sigma_w": 1.4142135623730951, "depth": 50},
        },
    }


def simulate_examples() -> dict[str, dict[str, Any]]:
    """Request examples of POST /simulate."""
    return {
        "sigmoid": {
            "summary": "sigmoid's gradient vanishing over 30 layers",
            "value": {"activation": "sigmoid", "depth": 30, "init": "xavier"},
        },
        "relu": {"summary": "relu at He's initialisation", "value": {"activation": "relu", "depth": 30}},
    }


def fit_examples() -> dict[str, dict[str, Any]]:
    """Request examples of POST /fit."""
    return {
        "silu_beta": {
            "summary": "silu's beta from samples",
            "value": {
                "activation": "silu",
                "x": [-3, -1, 0, 1, 3],
                "y": [-0.0134, -0.1545, 0, 0.8455, 2.9866],
            },
        },
        "prelu_to_gelu": {
            "summary": "the prelu nearest to gelu on [-3, 3]",
            "value": {
                "activation": "prelu",
                "x": [-3, -2, -1, -0.5, 0, 0.5, 1, 2, 3],
                "target": {"activation": "gelu"},
            },
        },
    }


def check_examples() -> dict[str, dict[str, Any]]:
    """Request examples of POST /check."""
    return {
        "float16_sigmoid": {
            "summary": "a float16 sigmoid kernel's results: the second is 1 ULP off",
            "value": {"activation": "sigmoid", "dtype": "float16", "x": [0, 1], "y": [0.5, 0.7314453125]},
        },
        "float64_gelu_derivative": {
            "summary": "gelu' in float64 near its zero",
            "value": {
                "activation": "gelu",
                "quantity": "derivative",
                "x": [-0.75, -0.7518],
                "y": [-0.0004342598, 7.1e-07],
            },
        },
    }
