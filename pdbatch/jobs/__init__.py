"""A call as a job: prepare (plan, reuse, limits), preview, submit, the BatchJob handle, the poll loop.

Request files (runfile, filewriter) and BigQuery tables (table*) run as jobs here too.
"""
