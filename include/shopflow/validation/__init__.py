"""Great Expectations gate: one suite per dataset, defined in code, each expectation tagged critical or warning."""
