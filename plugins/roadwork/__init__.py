"""Roadwork curation operators for the FiftyOne App.

Each operator is an adapter: it reads ``ctx.params``, makes one call into the ``curation``
package, and returns plain values. Run them from Python with
``curation.app.operators.execute(name, collection, params)``, which goes through FiftyOne's
``execute_operator`` exactly like the App.
"""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from curation import schema
from curation.app import operators as cops
from curation.label import human_labels


class DatasetStatus(foo.Operator):
    """Counts by source, split, label, slice and tag of the targeted samples."""

    @property
    def config(self):
        return foo.OperatorConfig(
            name="dataset_status",
            label="Roadwork: dataset status",
            description="Counts by source, split, label, slice and tag",
            icon="query_stats",
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        ctx.target_view()  # offers the App's dataset / current view / selection choice
        cops.add_delegation_input(inputs, what="the count")
        return types.Property(inputs, view=types.View(label="Roadwork: dataset status"))

    def resolve_delegation(self, ctx):
        return cops.wants_delegation(ctx.params)

    def execute(self, ctx):
        status = cops.collection_status(ctx.target_view())
        status["summary"] = cops.status_markdown(status)
        return status

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("summary", label="Status", view=types.MarkdownView())
        return types.Property(outputs)


class _Operator(foo.Operator):
    """Shared shape: target the dataset / view / selection, optional delegation, Markdown output."""

    name = label = description = icon = ""
    delegated_default = False

    @property
    def config(self):
        return foo.OperatorConfig(
            name=self.name,
            label=self.label,
            description=self.description,
            icon=self.icon,
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def form(self, ctx, inputs):
        """Operator-specific inputs."""

    def resolve_input(self, ctx):
        inputs = types.Object()
        ctx.target_view()
        self.form(ctx, inputs)
        cops.add_delegation_input(inputs, default=self.delegated_default, what=self.label)
        return types.Property(inputs, view=types.View(label=self.label))

    def resolve_delegation(self, ctx):
        return cops.wants_delegation(ctx.params)

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("summary", label=self.label, view=types.MarkdownView())
        return types.Property(outputs)

    def progress(self, ctx):
        def report(done, total):
            ctx.set_progress(progress=done / max(total, 1), label=f"{done}/{total}")

        return report


class PredictStage1(_Operator):
    name, label, icon = "predict_stage1", "Roadwork: predict (Stage-1)", "online_prediction"
    description = "Multi-view Stage-1 predictions with evidence views and gate features"
    delegated_default = True

    def form(self, ctx, inputs):
        inputs.str("model", default="champion", label="Model", description="Model dir, registered version, champion, or tiny-random")
        inputs.enum("view", ["stored", "validator"], default="stored", label="Image", description="Stored image or the validator query")
        inputs.int("batch_size", default=16, min=1, label="Batch size")
        inputs.enum("engine", ["process", "ray"], default="process", label="Engine",
                    description="process: this worker computes; ray: Ray tasks decode, Ray model actors predict (settings `ray`)")
        if ctx.params.get("engine") == "ray":
            inputs.bool("repredict", default=False, label="Repredict",
                        description="Also predict samples that already hold this model version's predictions")

    def execute(self, ctx):
        p = ctx.params
        result = cops.predict_target(
            ctx.target_view(), model=p.get("model", "champion"), view=p.get("view", "stored"),
            batch_size=int(p.get("batch_size", 16)), engine=p.get("engine") or "process", repredict=bool(p.get("repredict", False)),
            on_progress=self.progress(ctx),
        )
        result["summary"] = f"Predicted {result['n_predicted']} samples with model {result['model_version']}" + (
            "" if result["trained"] else " (UNTRAINED random weights)") + f"; skipped {result['n_skipped']}."
        return result


class EvaluateStage1(_Operator):
    name, label, icon = "evaluate_stage1", "Roadwork: evaluate", "fact_check"
    description = "TP/FP/FN/TN per sample, per-slice MCC and reward, failure views"

    def form(self, ctx, inputs):
        inputs.enum("view", ["stored", "validator"], default="stored", label="Predictions")

    def execute(self, ctx):
        result = cops.evaluate_target(ctx.target_view(), view=ctx.params.get("view", "stored"))
        result["summary"] = cops.rows_markdown(result["rows"], ("name", "n", "mcc", "accuracy", "precision", "recall", "reward"))
        if result["reward_lines"]:
            result["summary"] += "\n\nExpected validator reward per contract:\n\n" + "\n".join(f"- {line}" for line in result["reward_lines"])
        ctx.trigger("reload_dataset")
        return result


class ComputeGate(_Operator):
    name, label, icon = "compute_gate", "Roadwork: fit failure gate", "shield"
    description = "Fit the failure gate on val, certify a threshold on calib (Learn-then-Test), write failure_risk"

    settings = ("alpha", "delta")

    def form(self, ctx, inputs):
        cops.config_inputs(inputs, cops.GateJobConfig, self.settings, ctx.params)

    def execute(self, ctx):
        return cops.gate_dataset(ctx.target_view(), cops.config_from_params(cops.GateJobConfig, ctx.params, self.settings))


class MineHardCases(_Operator):
    name, label, icon = "mine_hard_cases", "Roadwork: mine hard cases", "diamond"
    description = ("Tag today's diverse batch of hard train/pool samples hard:YYYY-MM-DD "
                   "(a filtered view or selection gets its own tag, hard:YYYY-MM-DD:view-…)")
    delegated_default = True

    settings = ("quota", "min_hardness")

    def form(self, ctx, inputs):
        cops.config_inputs(inputs, cops.MiningConfig, self.settings, ctx.params)

    def execute(self, ctx):
        return cops.mine_target(ctx.target_view(), cops.config_from_params(cops.MiningConfig, ctx.params, self.settings))


class EmbeddingsMap(_Operator):
    name, label, icon = "embeddings_map", "Roadwork: embeddings map", "scatter_plot"
    description = "Brain map (UMAP), similarity index and uniqueness of the Stage-1 embeddings; opens in the Embeddings panel"
    delegated_default = True

    def form(self, ctx, inputs):
        inputs.enum("method", ["umap", "tsne", "pca"], default="umap", label="Map method")
        inputs.bool("overwrite", default=False, label="Recompute", description="Even when the runs already cover the same samples")

    def execute(self, ctx):
        return cops.embeddings_map_target(ctx.target_view(), method=ctx.params.get("method", "umap"), overwrite=bool(ctx.params.get("overwrite")))


class SimilarToSelected(_Operator):
    name, label, icon = "similar_to_selected", "Roadwork: similar to selected", "image_search"
    description = "Tag the pool/train samples most like the selected ones as a labeling batch similar:YYYY-MM-DD:<hash>"

    def form(self, ctx, inputs):
        inputs.int("k", default=50, min=1, label="How many", description="Nearest samples to tag")
        inputs.bool("exclude_labeled", default=False, label="Only unlabeled", description="Leave out samples with a ground-truth label")
        inputs.bool("tag", default=True, label="Tag as a labeling batch", description="Off: only show the nearest samples, nearest first")

    def execute(self, ctx):
        target = ctx.target_view()
        if not ctx.selected and target.count() > cops.MAX_QUERY_SAMPLES:
            raise ValueError(f"Select the samples to search like (at most {cops.MAX_QUERY_SAMPLES}); the target holds {target.count()}.")
        query = list(ctx.selected or target.values("id"))
        config = cops.SimilarConfig(k=int(ctx.params.get("k", 50)), exclude_labeled=bool(ctx.params.get("exclude_labeled")))
        result = cops.similar_target(target, query, config, tag=bool(ctx.params.get("tag", True)))
        ctx.ops.set_view(view=ctx.dataset.select(result["ids"], ordered=True))  # nearest first
        return result


class OrangeCandidates(_Operator):
    name, label, icon = "orange_candidates", "Roadwork: orange hard-negative queue", "format_list_numbered"
    description = "Likely orange false positives first (orange share × p_roadwork, then failure risk)"
    settings = ("min_orange_share",)

    def form(self, ctx, inputs):
        cops.config_inputs(inputs, human_labels.OrangeQueueConfig, self.settings, ctx.params)

    def execute(self, ctx):
        config = cops.config_from_params(human_labels.OrangeQueueConfig, ctx.params, self.settings)
        view = human_labels.orange_candidates(ctx.target_view(), config)
        ctx.ops.set_view(view=view)
        return {"summary": f"{view.count()} candidates; saved view {schema.ORANGE_VIEW}."}


class MarkHardNegative(_Operator):
    name, label, icon = "mark_hard_negative", "Roadwork: mark hard negative", "block"
    description = "Selected samples are orange-but-not-roadwork (ground truth no_roadwork)"

    def form(self, ctx, inputs):
        inputs.enum("category", list(schema.HN_CATEGORIES), required=True, label="Category")
        inputs.str("reason", default="", label="Reason")

    def execute(self, ctx):
        n = human_labels.mark_hard_negative(ctx.target_view(), user=cops.labeler_name(), category=ctx.params["category"], reason=ctx.params.get("reason", ""))
        ctx.trigger("reload_dataset")
        return {"summary": f"Marked {n} hard negatives ({ctx.params['category']})."}


class MarkRoadwork(_Operator):
    name, label, icon = "mark_roadwork", "Roadwork: mark roadwork (missed positive)", "construction"
    description = "Selected samples show roadwork (ground truth roadwork by a human)"

    def form(self, ctx, inputs):
        inputs.str("reason", default="missed positive", label="Reason")

    def execute(self, ctx):
        n = human_labels.mark_roadwork(ctx.target_view(), user=cops.labeler_name(), reason=ctx.params.get("reason", "missed positive"))
        ctx.trigger("reload_dataset")
        return {"summary": f"Marked {n} samples roadwork."}


class UndoLabel(_Operator):
    name, label, icon = "undo_label", "Roadwork: undo last label change", "undo"
    description = "Restore the label from before the last human change (recorded in history)"

    def execute(self, ctx):
        n = human_labels.undo_label(ctx.target_view(), user=cops.labeler_name())
        ctx.trigger("reload_dataset")
        return {"summary": f"Undid the last label change on {n} samples."}


class AcceptBoxes(_Operator):
    name, label, icon = "accept_boxes", "Roadwork: accept boxes", "check_box"
    description = "Promote edited boxes / proposals into primitives; the label rule updates ground truth"

    def form(self, ctx, inputs):
        inputs.list("sources", types.String(), default=["primitives_edit"], label="From fields",
                    description=", ".join(human_labels.BOX_SOURCES))
        inputs.float("min_confidence", default=0.5, min=0.0, max=1.0, label="Minimum proposal confidence")

    def execute(self, ctx):
        n = human_labels.accept_boxes(ctx.target_view(), user=cops.labeler_name(), sources=tuple(ctx.params.get("sources") or ["primitives_edit"]),
                                  min_confidence=float(ctx.params.get("min_confidence", 0.5)))
        ctx.trigger("reload_dataset")
        return {"summary": f"Accepted boxes on {n} samples."}


class SamBoxes(_Operator):
    name, label, icon = "sam_boxes", "Roadwork: SAM-assisted boxes", "auto_fix_high"
    description = "Masks and tight boxes (sam_primitives) from proposals, evidence views, boxes or clicked points"
    delegated_default = True

    def form(self, ctx, inputs):
        inputs.str("config", default="sam/segment_anything_vit_h.yaml", label="SAM config",
                   description="YAML under models/ (checkpoint or model path inside) or an absolute path")

    def execute(self, ctx):
        done = {"n": 0}

        def advance(n=1):
            done["n"] += n
            ctx.set_progress(label=f"{done['n']} samples")

        r = cops.sam_boxes_target(ctx.target_view(), config_path=ctx.params.get("config", "sam/segment_anything_vit_h.yaml"), on_progress=advance)
        ctx.trigger("reload_dataset")
        r["summary"] = f"{r['n_masks']} masks on {r['n_samples']} samples written to `{r['field']}` ({r['n_empty']} empty)."
        return r


class Synthesize(_Operator):
    name, label, icon = "synthesize", "Roadwork: synthesize (SDXL)", "brush"
    description = "Orange-but-not-roadwork hard negatives, validator-style children, inpainting; admitted by the filter"
    delegated_default = True

    def form(self, ctx, inputs):
        inputs.str("model", default="stabilityai/stable-diffusion-xl-base-1.0", label="Generator",
                   description="Hub id, local folder, or tiny-random (random weights: never admitted)")
        inputs.enum("mode", ["text2img", "img2img", "inpaint_replace", "inpaint_add"], default="text2img", label="Mode")
        inputs.enum("purpose", ["train", "val_synthetic"], default="train", label="Purpose")
        inputs.enum("kind", ["hard_negative", "positive", "negative", "caption"], default="hard_negative", label="Prompt kind")
        inputs.int("count", default=8, min=1, label="Images")
        inputs.int("seed", default=0, label="Seed")
        inputs.int("steps", default=30, min=1, label="Steps")
        inputs.int("size", default=1024, min=64, label="Width and height")

    def execute(self, ctx):
        p = ctx.params
        job = {k: p[k] for k in ("mode", "purpose", "kind", "count", "seed", "steps") if k in p}
        job["width"] = job["height"] = int(p.get("size", 1024))
        r = cops.synthesize_target(ctx.target_view(), params=job, model=p.get("model", "tiny-random"))
        ctx.trigger("reload_dataset")
        admitted = "not admitted (random-weight generator)" if r["random_weights"] else f"split {r['split']}"
        r["summary"] = f"Added {len(r['added'])} of {r['planned']} images, {admitted}; skipped {r['skipped']}."
        return r


class Stage2Evidence(_Operator):
    name, label, icon = "stage2_evidence", "Roadwork: Stage-2 evidence (OCR cascade)", "text_fields"
    description = "Read sign text and score detector proposals on risky samples; write ocr_text, stage2_evidence, cascade"
    delegated_default = True
    settings = ("r_accept", "default")

    def form(self, ctx, inputs):
        inputs.bool("risky_only", default=True, label="Risky samples only", description="Only samples with failure_risk ≥ r_accept")
        cops.config_inputs(inputs, cops.RoutingConfig, self.settings, ctx.params)
        inputs.bool("views", default=True, label="Also read Stage-1's evidence views")
        inputs.enum("backend", ["rapidocr", "easyocr"], default="rapidocr", label="OCR backend")
        inputs.bool("evaluate", default=True, label="Evaluate against Stage-1 alone (labelled samples)")

    def execute(self, ctx):
        p = ctx.params
        r = cops.evidence_target(
            ctx.target_view(), routing=cops.config_from_params(cops.RoutingConfig, p, self.settings), backend=p.get("backend", "rapidocr"),
            risky_only=bool(p.get("risky_only", True)), views=bool(p.get("views", True)),
            evaluate=bool(p.get("evaluate", True)), on_progress=self.progress(ctx),
        )
        ctx.trigger("reload_dataset")
        stages = ", ".join(f"{k} {v}" for k, v in sorted(r["stages"].items()))
        r["summary"] = (f"Cascade on {r['n_predicted']} samples ({stages}); {r['n_stage2']} read by {r['backend']} "
                        f"in {r['seconds']:.1f} s. Filter `ocr_text` by `keywords`, `cascade` by `stage`.")
        if r["evaluation"]:
            r["summary"] += "\n\n" + cops.rows_markdown(r["evaluation"]["rows"], (
                "name", "n", "stage1_mcc", "cascade_mcc", "stage1_accuracy", "cascade_accuracy", "stage2_share", "seconds_per_image"))
        return r


class RetrainAndExport(_Operator):
    name, label, icon = "retrain_and_export", "Roadwork: retrain and export", "rocket_launch"
    description = "Train a challenger on the current labels, promote it only if it beats the champion, export the miner bundle"
    delegated_default = True

    def form(self, ctx, inputs):
        inputs.str("pipeline", default="retrain_export.yaml", label="Pipeline", description="YAML under pipelines/ or an absolute path")
        inputs.bool("force", default=False, label="Force promotion (recorded)")

    def resolve_delegation(self, ctx):
        return True  # training outlives the App's 600 s limit: always the worker

    def execute(self, ctx):
        r = cops.retrain_target(ctx.dataset, pipeline=ctx.params.get("pipeline", "retrain_export.yaml"), force=bool(ctx.params.get("force", False)))
        verdict = "PROMOTED" if r["promoted"] else "champion kept"
        r["summary"] = f"**{r['version']}: {verdict}** — " + "; ".join(r["reasons"]) + f"\n\nReport: `{r['report']}`; bundle: `{r['bundle']}`"
        return r


def register(p):
    # every operator defined here; fiftyone.yml lists them (FiftyOne registers only what it lists)
    for operator in (DatasetStatus, *_Operator.__subclasses__()):
        p.register(operator)
