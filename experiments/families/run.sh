#!/usr/bin/env bash
# The model-families table (issue 14): each row trains iwae-mlp.toml for the same number of
# epochs, changing one setting, then estimates log p(x) on the whole test set by importance
# sampling. Usage: experiments/families/run.sh [OUT_DIR]   (default runs/families)
# Environment: EPOCHS (10), K (5000 importance samples), LIMIT (0 = every test example),
# ROWS (default: "vanilla vanilla-mc mog vamp-warmup iaf iwae5 iwae50"; also "vamp", "cvae"), COMPONENTS (500: the mixture's components
# and the VampPrior's pseudo-inputs, as in Tomczak & Welling), XTASK (the binary; default
# cargo xtask-cpu).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-runs/families}"
epochs="${EPOCHS:-10}"
k="${K:-5000}"
limit="${LIMIT:-0}"
rows="${ROWS:-vanilla vanilla-mc mog vamp-warmup iaf iwae5 iwae50}"
components="${COMPONENTS:-500}"
read -r -a xtask <<< "${XTASK:-cargo xtask-cpu}"

settings() {
    case "$1" in
        vanilla) ;;
        # The control for the rows whose KL has no closed form (mixture priors, the IAF): the
        # same VAE with the Monte-Carlo KL, to separate its gradient noise from the family.
        vanilla-mc) echo "--set training.kl_estimator=MonteCarlo" ;;
        mog) echo "--set model.prior.kind=mixture --set model.prior.components=$components" ;;
        vamp) echo "--set model.prior.kind=vamp --set model.prior.pseudo_inputs=$components" ;;
        # The VampPrior with KL warm-up over the first 1800 steps (3 epochs at batch 100), as
        # Tomczak & Welling trained it: without it the posterior collapses onto the prior.
        vamp-warmup) echo "--set model.prior.kind=vamp --set model.prior.pseudo_inputs=$components --set training.objective.warmup_steps=1800" ;;
        iaf) echo "--set model.posterior.kind=iaf --set model.posterior.steps=2 --set model.posterior.hidden=320" ;;
        iwae5) echo "--set training.importance_bound.kind=iwae --set training.importance_bound.samples=5" ;;
        iwae50) echo "--set training.importance_bound.kind=iwae --set training.importance_bound.samples=50" ;;
        # The class-conditional VAE: its evaluation is given the label, log p(x|c); its
        # marginal is log p(x) ≥ log p(x|c) + ln p(c) = log p(x|c) − ln 10 (ten equal classes).
        cvae) echo "--set model.condition.kind=class --set model.condition.classes=10" ;;
        *) echo "unknown row: $1" >&2; exit 2 ;;
    esac
}

mkdir -p "$out"
for row in $rows; do
    run="$out/$row"
    if [[ ! -f "$run/model.safetensors" ]]; then
        # shellcheck disable=SC2046 # the settings are words on purpose
        "${xtask[@]}" train fashion-mnist --backend cpu --config "$here/iwae-mlp.toml" \
            --epochs "$epochs" $(settings "$row") --out "$run"
    fi
    "${xtask[@]}" eval --run "$run" --backend cpu --importance-samples "$k" --limit "$limit"
done

printf '| row | test −ELBO (nats) | KL (nats) | test log p(x), K = %s (nats) | train images/s |\n' "$k"
printf '|---|---|---|---|---|\n'
for row in $rows; do
    jq -r --arg row "$row" \
        '"| \($row) | \(.test.neg_elbo_nats*100|round/100) | \(.test.kl_nats*100|round/100) | \(.test.is_log_px_nats*100|round/100) (\(.test.is_examples) examples) | \(.train_images_per_second|round) |"' \
        "$out/$row/metrics.json"
done
