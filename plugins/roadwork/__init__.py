"""Roadwork curation operators for the FiftyOne App.

Each operator is an adapter: it reads ``ctx.params``, makes one call into the ``curation``
package, and returns plain values. Run them from Python with
``curation.operators.execute(name, collection, params)``, which goes through FiftyOne's
``execute_operator`` exactly like the App.
"""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from curation import operators as cops


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


def register(p):
    p.register(DatasetStatus)
