#!/usr/bin/env bash
# Stage the results that are finished: complete run folders (not their deploy/ while a
# deployment is running elsewhere: pass --with-deploy to include it), audits, splits,
# comparisons, diagnostics, notes and the experiment log, and the removal of what was deleted. Partial runs are
# never staged.
set -euo pipefail
cd "$(dirname "$0")/.."
with_deploy=${1:-}
stage_run() {  # a complete run's result files (never its model)
    for f in config.json provenance.json history.csv events.jsonl metrics.json predictions.csv val_predictions.csv \
             leakage.json operating_points.json complete.json; do
        if [ -f "$1/$f" ]; then git add "$1/$f"; fi
    done
}
# Files removed from artifacts/ (`experiment --retire --yes`, say) leave the commit too.
git ls-files -d -z artifacts | xargs -0r git rm --cached --quiet --
# The leakage lesson (experiments/leakage_lesson.toml): its complete runs, audit, splits and record.
for marker in artifacts/lessons/*/*/*/*/complete.json; do
    [ -e "$marker" ] && stage_run "$(dirname "$marker")"
done
for f in artifacts/lessons/*/lesson.json artifacts/lessons/*/experiment_log.jsonl artifacts/lessons/*/*/audit.json \
         artifacts/lessons/*/*/mcnemar.json artifacts/lessons/*/*/splits; do
    if [ -e "$f" ]; then git add "$f"; fi
done
# Newest runs first: when the size budget cannot keep every TFLite file, the latest runs' are kept (a re-run
# study's models, not the ones it replaces; files already committed stay).
for marker in $(ls -t artifacts/*/*/*/complete.json 2>/dev/null); do
    [ -e "$marker" ] || continue
    run=$(dirname "$marker")
    stage_run "$run"
    # Deployment: the measurements, and only the TFLite files the Try page runs (float16 and
    # full-integer int8); the other variants are measured but not kept (size budget).
    # A run whose lock is held is being deployed right now: its deployment.json is partial.
    if [ "$with_deploy" = "--with-deploy" ] && [ -f "$run/deploy/deployment.json" ] \
        && { [ ! -e "$run/.lock" ] || flock -n "$run/.lock" true; }; then
        git add "$run/deploy/deployment.json"
        if [ -f "$run/deploy/predictions.csv" ]; then git add "$run/deploy/predictions.csv"; fi
        for f in "$run"/deploy/tflite_int8_full.tflite "$run"/deploy/tflite_float16.tflite; do
            [ -f "$f" ] || continue
            if git ls-files --error-unmatch "$f" >/dev/null 2>&1; then git add -f "$f"; continue; fi
            # Budget: artifacts/ stays under 80 MB. The int8 file (the edge target; ensembles on the Try page
            # run it) is kept while the total stays under 75 MB, a float16 one only under 65 MB (room for results).
            limit=65000000
            case "$f" in *int8_full.tflite) limit=75000000 ;; esac
            committed=$(git ls-files -s artifacts | awk '{print $2}' | git cat-file --batch-check='%(objectsize)' \
                        | awk '{n += $1} END {print n + 0}')
            if [ $((committed + $(stat -c %s "$f"))) -lt "$limit" ]; then
                git add -f "$f"
            else
                echo "not kept (size budget): $f" >&2
            fi
        done
    fi
done
# Architecture measurements (no trained weights): the measurements only, no model files;
# not while one is being measured (its lock is held).
for f in artifacts/architectures/*/deployment.json; do
    [ -e "$f" ] || continue
    lock="$(dirname "$f")/.lock"
    if [ ! -e "$lock" ] || flock -n "$lock" true; then git add "$f"; fi
done
# Ensembles (complete ones) and model selection (CV, fold studies, tuning records and the Optuna study).
for marker in artifacts/*/ensembles/*/complete.json; do
    [ -e "$marker" ] && git add "$(dirname "$marker")"
done
for f in artifacts/*/audit.json artifacts/*/splits artifacts/*/dataset_notes.md artifacts/*/mcnemar.json \
         artifacts/*/unavailable.json artifacts/*/diagnostics artifacts/*/model_selection artifacts/experiment_log.jsonl; do
    if [ -e "$f" ]; then git add "$f"; fi
done
# The README's results are the report of exactly the staged artifacts (tests/test_committed_artifacts.py),
# not of what else lies in artifacts/ (a deployment in progress, say).
staged=$(mktemp -d)
trap 'rm -rf "$staged"' EXIT
{ git ls-files -z artifacts | grep -zv -e '\.tflite$' -e '\.keras$' || [ $? -eq 1 ]; } \
    | xargs -0r git checkout-index --prefix="$staged/" --
python -m core report --readme README.md --artifacts "$staged/artifacts"
git add README.md
