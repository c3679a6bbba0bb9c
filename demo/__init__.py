"""The bundled demo, an example project and never the product's behaviour: a seeded generator of
churn data with deliberate defects and drift (`generator`), the helpdesk API it serves locally
(`api`), its project file and sources (`project`), its feature views (`views`) and churn model
(`model`). Only the CLI and the flows' defaults import it."""
