"""``tabpipe models list|promote|verify|card|sign`` and ``tabpipe keys generate``: the registry and its keys.

Exit codes: 0 done; 1 a registry error (unknown, unsigned or tampered version; a keypair exists);
2 usage or configuration (missing keys).
"""
from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from tabpipe.cli.common import DEFAULT_KEYS_DIR, ConfigOpt, cli_errors, err, open_registry_of, out

models_app = typer.Typer(help="The model registry: list versions, promote (or roll back), verify, show model cards and sign.",
                         no_args_is_help=True)
keys_app = typer.Typer(help="The Ed25519 keypair that signs registry versions.", no_args_is_help=True)


@models_app.command("list")
@cli_errors
def models_list(config: Path = ConfigOpt) -> None:
    """List registry versions with their test metrics; '*' marks production."""
    from tabpipe.errors import RegistryError

    registry = open_registry_of(config)
    try:
        registry.production_version()
    except RegistryError as exc:  # still list the versions: promoting one of them is the repair
        err.print(f"[yellow]warning:[/] {exc}", highlight=False)
    versions = registry.list_versions()
    if not versions:
        out.print("registry is empty")
        return
    table = Table("", "version", "created (UTC)", "candidate", "roc_auc", "pr_auc", "run", "verified")
    for v in versions:
        m = v.metadata.get("metrics", {})
        m = m if isinstance(m, dict) else {}
        table.add_row("*" if v.is_production else "", v.version, v.created_at[:19], str(v.metadata.get("candidate", "")),
                      _number(m.get("roc_auc")), _number(m.get("pr_auc")), str(v.metadata.get("run_id", "")),
                      "yes" if v.problem is None else f"NO: {v.problem}")
    out.print(table)


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


@models_app.command("promote")
@cli_errors
def models_promote(version: str = typer.Argument(..., help="Version to make production, e.g. v0002."),
                   config: Path = ConfigOpt) -> None:
    """Point production at VERSION (also how you roll back), after proving it loads.

    ``tabpipe models verify VERSION`` runs first in a separate process (signature, checksums,
    unpickling), so nothing is unpickled here; the pointer then moves only if production is still
    what it was when this command started (compare-and-swap).
    """
    import subprocess  # nosec B404 -- runs this interpreter's own `tabpipe models verify`

    from tabpipe.errors import RegistryError
    from tabpipe.registry import ANY

    registry = open_registry_of(config, sign=True)
    try:
        before = registry.production_version()
    except RegistryError as exc:  # an untrusted pointer (forged, rolled back): this promotion replaces it
        err.print(f"[yellow]warning:[/] {exc}; it will be replaced", highlight=False)
        before = ANY
    registry.metadata(version)  # fail fast (exit 1, one line) on an unknown or unsigned version
    proof = subprocess.run([sys.executable, "-m", "tabpipe.cli", "models", "verify", version, "--config", str(config)],  # nosec B603 -- fixed argv, no shell
                           capture_output=True, text=True, timeout=900)
    if proof.returncode != 0:
        detail = (proof.stderr.strip() or proof.stdout.strip() or f"exit code {proof.returncode}").removeprefix("error: ")
        raise RegistryError(f"{version} did not load, production unchanged: {detail}")
    registry.promote(version, expected=before)
    out.print(f"production: {before if before is not ANY else 'untrusted pointer'} -> {version}")


@models_app.command("verify")
@cli_errors
def models_verify(version: str = typer.Argument(..., help="Version to check, e.g. v0002."),
                  config: Path = ConfigOpt) -> None:
    """Prove VERSION loads: signature, file checksums, unpickling, and a model with predict_proba."""
    from tabpipe.errors import RegistryError

    model, meta = open_registry_of(config).load_model(version)
    if not callable(getattr(model, "predict_proba", None)):
        raise RegistryError(f"{version}/model.pkl loads, but is not a model with predict_proba")
    out.print(f"{version}: signature, {len(meta['files'])} file checksum(s) and loading verified "
              f"({type(model).__name__})")


@models_app.command("card")
@cli_errors
def models_card(version: str = typer.Argument(..., help="Version whose model card to print, e.g. v0002."),
                diff: str = typer.Option(None, "--diff", help="Also list what differs from this version's card."),
                as_json: bool = typer.Option(False, "--json", help="Print the card's JSON (with --diff: the differences)."),
                config: Path = ConfigOpt) -> None:
    """Print VERSION's model card (model_card.json, verified against the version's signature); with
    --diff OTHER, every entry that differs between OTHER's card and VERSION's."""
    import json

    from tabpipe.reports.model_card import card_diff, render_text

    registry = open_registry_of(config)
    card = _read_card(registry, version)
    if diff is None:
        out.print(json.dumps(card, indent=2) if as_json else render_text(card), highlight=False, markup=False,
                  soft_wrap=True)
        return
    changes = card_diff(_read_card(registry, diff), card)
    if as_json:
        out.print(json.dumps([{"key": k, diff: a, version: b} for k, a, b in changes], indent=2),
                  highlight=False, markup=False, soft_wrap=True)
        return
    out.print(f"model card {diff} -> {version}: {len(changes)} entries differ", highlight=False, markup=False)
    for key, old, new in changes:
        out.print(f"{key}: {json.dumps(old)} -> {json.dumps(new)}", highlight=False, markup=False, soft_wrap=True)


def _read_card(registry, version: str) -> dict:
    """A version's model_card.json after its signature and checksum are verified."""
    import json

    from tabpipe.errors import RegistryError

    if "model_card.json" not in registry.metadata(version)["files"]:
        raise RegistryError(f"{version} has no model card (published before model cards existed)")
    return json.loads(registry.fetch(version, "model_card.json").read_text())


@models_app.command("sign")
@cli_errors
def models_sign(version: str = typer.Argument(..., help="Version to sign, e.g. v0002."),
                config: Path = ConfigOpt) -> None:
    """Sign VERSION with the signing key after checking its files against their checksums.

    For versions published unsigned or by an older tabpipe (HMAC): signing vouches for them, so
    sign only versions you know are genuine.
    """
    meta = open_registry_of(config, sign=True).sign_version(version)
    out.print(f"signed {version} (key {meta['signature']['key_id']}, {len(meta['files'])} files checked)")


@keys_app.command("generate")
@cli_errors
def keys_generate(
    dir: Path = typer.Option(DEFAULT_KEYS_DIR, "--dir", help="Folder for the keypair (kept out of git)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing keypair (old versions then no longer verify)."),
) -> None:
    """Write a new Ed25519 keypair: the private key (mode 0600) signs on the trainer only; the
    public key goes to every host that loads models."""
    from tabpipe.registry.signing import write_keypair

    try:
        private, public = write_keypair(dir, force=force)
    except FileExistsError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    out.print(f"wrote {private} (private: the trainer only, mode 0600)\nwrote {public} (public: every server)")
