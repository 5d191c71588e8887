"""Parameter counts: total, trainable, and by category, with shared tensors counted once.

Categories (each parameter lands in exactly one, first match wins):
- classifier: the parameters of the classifier (`model.get_classifier()` for timm models, else the
  last nn.Linear);
- conv: kernels (and biases) of plain convs, and of converted layers the tensors shaped like a
  kernel of the layer's geometry (a single kernel or a bank of experts) plus the biases next to them;
- attention: everything else inside a submodule of a converted layer (routing, SE, attention heads,
  their norms), and the convs/linears of attention modules the backbone already has (e.g. SE);
- modulation: the remaining parameters held directly by a converted layer or by the module that holds
  its kernel (static, input-independent modulation such as learned spatial/filter scales);
- norm: parameters of normalisation layers outside converted layers;
- other: the rest (e.g. a linear layer that is not the classifier, position embeddings).

A converted layer may state the category of its parameters itself with a method
`param_categories() -> dict[str, str]` (parameter name relative to the layer -> category); what it
names there overrides the rules above.
"""

from __future__ import annotations

from torch import nn

from ..models.variant import DynamicLayer

CATEGORIES = ("conv", "attention", "modulation", "norm", "classifier", "other")
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def _classifier(model: nn.Module) -> nn.Module | None:
    get = getattr(model, "get_classifier", None)
    if callable(get):
        try:
            clf = get()
        except Exception:  # a model whose get_classifier needs arguments
            clf = None
        if isinstance(clf, nn.Module) and any(True for _ in clf.parameters()):
            return clf
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _outermost_dynamic(model: nn.Module) -> dict[str, nn.Module]:
    out: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if name and isinstance(module, DynamicLayer) and not any(name.startswith(p + ".") for p in out):
            out[name] = module
    return out


def _is_kernel(shape: tuple[int, ...], layer: nn.Module) -> bool:
    """A tensor shaped like one kernel of the layer's geometry, or a stack of such kernels."""
    try:
        cin = int(layer.in_channels) // int(layer.groups)
        kh, kw = tuple(layer.kernel_size)
        cout = int(layer.out_channels)
    except (AttributeError, TypeError, ValueError):
        return False
    if len(shape) < 4 or tuple(shape[-3:]) != (cin, kh, kw):
        return False
    return shape[-4] == cout


def _categorise_dynamic(prefix: str, layer: nn.Module, out: dict[str, str]) -> None:
    explicit = {}
    fn = getattr(layer, "param_categories", None)
    if callable(fn):
        explicit = {f"{prefix}.{k}": v for k, v in fn().items()}
    kernel_owners: set[str] = set()
    params = list(layer.named_parameters(prefix=prefix))
    for name, p in params:
        if _is_kernel(tuple(p.shape), layer):
            kernel_owners.add(name.rpartition(".")[0])
    for name, p in params:
        if name in out:
            continue
        owner, _, leaf = name.rpartition(".")
        if name in explicit:
            out[name] = explicit[name]
        elif _is_kernel(tuple(p.shape), layer) or (owner in kernel_owners and leaf.startswith("bias")):
            out[name] = "conv"
        elif owner == prefix or owner in kernel_owners:
            out[name] = "modulation"
        else:
            out[name] = "attention"


def param_categories(model: nn.Module) -> dict[str, str]:
    """The category of every (unique) parameter of `model`, by qualified name."""
    out: dict[str, str] = {}
    clf = _classifier(model)
    if clf is not None:
        for name, module in model.named_modules():
            if module is clf:
                for pname, _ in module.named_parameters(prefix=name):
                    out[pname] = "classifier"
                break
    for prefix, layer in _outermost_dynamic(model).items():
        _categorise_dynamic(prefix, layer, out)
    attention_prefixes = [n for n, m in model.named_modules()
                          if n and any(h in type(m).__name__.lower() for h in ("squeezeexcite", "semodule", "attn",
                                                                              "attention", "ecamodule"))]
    modules = dict(model.named_modules())
    for name, _ in model.named_parameters():
        if name in out:
            continue
        owner = name.rpartition(".")[0]
        module = modules.get(owner)
        if any(owner == a or owner.startswith(a + ".") for a in attention_prefixes):
            out[name] = "attention"
        elif isinstance(module, nn.Conv2d | nn.Conv1d | nn.Conv3d):
            out[name] = "conv"
        elif isinstance(module, NORM_TYPES):
            out[name] = "norm"
        else:
            out[name] = "other"
    return out


def count_params(model: nn.Module) -> dict[str, int]:
    """Total, trainable and per-category parameter counts; a tensor shared by several modules counts once."""
    cats = param_categories(model)
    counts = {"total": 0, "trainable": 0, **{c: 0 for c in CATEGORIES}}
    seen: set[int] = set()
    for name, p in model.named_parameters():  # named_parameters already drops duplicates
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel()
        counts["total"] += n
        if p.requires_grad:
            counts["trainable"] += n
        counts[cats.get(name, "other")] += n
    return counts


def count_deployed_params(model: nn.Module) -> dict[str, int]:
    """`count_params` of the inference form (`dynconv_bench.deploy(model)`: static parts folded)."""
    from ..models.convert import deploy

    return count_params(deploy(model))
