"""The daily shop report: seven sections read from the metadata store and the lake, rendered to one
self-contained HTML page and a JSON summary per day (`shopflow.report.build.build_report`)."""
