"""The repair's audited actions, named once: what the repair does to an item (`fill`, `review`, `flag`, or leave it
`unchanged`), which the review, the report and the alerts read back from the audit."""

FILL, REVIEW, FLAG, UNCHANGED = "fill", "review", "flag", "unchanged"
ACTIONS = (FLAG, REVIEW, FILL)  # what the audit records (an unchanged item is not audited)
PENDING_ACTIONS = (REVIEW, FLAG)  # what needs a person; fills may be reviewed too
