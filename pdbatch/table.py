"""``pdbatch.table("bq://project.dataset.table")``: a BigQuery table as a batch job's input, never read into pandas.

The handle reads nothing when it is made. Its ``.llama`` namespace mirrors a
frame's: :meth:`TableLlama.to_sql` renders the request rows as one BigQuery
``SELECT`` (no connection needed), :meth:`TableLlama.preview` counts and
prices the call with one metadata call, one aggregate query and a dry run,
and :meth:`TableLlama.submit` / :meth:`TableLlama.batch_predict` materialize
the request table beside the source and run the job there (:mod:`pdbatch.jobs.tablejob`);
the answers come back as a result table (:mod:`pdbatch.jobs.tableresult`).
:meth:`TableLlama.classify` labels the rows as ``df.llama.classify`` does
(:mod:`pdbatch.jobs.tableclassify`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .backends import Backend, get_backend
from .builders.bqsource import Source, bigquery_client
from .builders.sqlbuild import TableRef
from .call import Call, Options
from .display.choose import live_display_available
from .errors import ConfigError
from .jobs import tablejob, tableresult
from .models import CHAT, URLS
from .results.classify import LabelSpec

__all__ = ["Table", "TableLlama", "bigquery_client", "table"]


def table(uri: str, *, client: Any = None) -> Table:
    """A handle on the BigQuery table ``uri``; nothing is read until a method needs it.

    Parameters
    ----------
    uri : str
        ``"bq://project.dataset.table"``.
    client : google.cloud.bigquery.Client, optional
        The client for metadata, queries and the result table; by default one
        for the table's project with Application Default Credentials (anonymous
        when ``BIGQUERY_EMULATOR_HOST`` points at an emulator).

    Returns
    -------
    Table

    Raises
    ------
    ConfigError
        ``uri`` names no table (the message shows the expected form).
    """
    return Table(TableRef.parse(uri), client)


class Table(Source):
    """A BigQuery table to run a model over; see :func:`table`.

    Attributes
    ----------
    ref : TableRef
        Its project, dataset and table.
    columns, location
        Its schema and its dataset's location (one metadata call each, when first used).
    llama : TableLlama
        ``to_sql``, ``preview``, ``submit``, ``batch_predict``, ``classify``, ``embed``.
    """

    @property
    def llama(self) -> TableLlama:
        """The batch namespace, as ``df.llama`` for a frame."""
        return TableLlama(self)

    def __repr__(self) -> str:
        return f"pdbatch.table({self.uri!r})"


class TableLlama:
    """``table.llama``: the frame accessor's methods, for a table that stays in BigQuery."""

    def __init__(self, table: Table) -> None:
        self._table = table

    def to_sql(self, prompt: str | None = None, *, messages: str | None = None, system: str | None = None,
               model: str | None = None, url: str = URLS[CHAT], custom_id: str | None = None,
               backend: str | Backend | None = None, on_null: str = "raise", schema: Any = None,
               **params: Any) -> str:
        """The request rows as one BigQuery ``SELECT``; no connection is made.

        Produces ``custom_id``, ``method``, ``url``, ``body`` (JSON) and the
        table's other columns (``src.*``: without the schema the columns are
        not known; ``submit`` lists them and refuses reserved names).

        Parameters
        ----------
        prompt, messages, system, model, url, custom_id, on_null, schema, **params
            As for ``df.llama.to_requests``; ``custom_id`` names a key column
            (STRING or INT64), else ids are ``row-<n>`` from ``ROW_NUMBER()``.
        backend : str or Backend, optional
            Resolves ``model`` and checks the body parameters.

        Returns
        -------
        str
            The SELECT statement.
        """
        call = Call(prompt=prompt, messages=messages, system=system, model=model, url=url, custom_id=custom_id,
                    on_null=on_null, params=params, schema=schema)
        return tablejob.render_call(self._table, call, get_backend(backend), with_schema=False).rendered.select

    def preview(self, prompt: str | None = None, *, messages: str | None = None, system: str | None = None,
                model: str | None = None, backend: str | Backend | None = None, url: str = URLS[CHAT],
                custom_id: str | None = None, on_null: str = "raise", schema: Any = None,
                rename_reserved: bool = False, prices: Any = None, labels: Sequence[str] | None = None,
                output_column: str = "label", calibrate: bool = True, answer_prefix: str = "Answer:",
                **params: Any) -> tablejob.TablePreview:
        """Rows, tokens, price and BigQuery's bytes processed, without creating anything.

        Reads the table's schema (one metadata call), runs one aggregate query
        (rows, nulls, key checks, tokens approximated in SQL) and a dry run of
        the request SELECT. Takes the arguments of :meth:`submit`; with
        ``labels=`` (and ``output_column``, ``calibrate``, ``answer_prefix``),
        what :meth:`classify` would send.

        Returns
        -------
        TablePreview
        """
        spec = None if labels is None else LabelSpec.make(labels, output=output_column, calibrate=calibrate,
                                                          prefix=answer_prefix, output_name="output_column").record()
        call = Call(prompt=prompt, messages=messages, system=system, model=model, url=url, custom_id=custom_id,
                    on_null=on_null, params=params, schema=schema, classify=spec)
        options = Options(rename_reserved=rename_reserved, prices=prices)
        return tablejob.preview(self._table, call, get_backend(backend), options)

    def submit(self, prompt: str | None = None, *, messages: str | None = None, system: str | None = None,
               model: str | None = None, backend: str | Backend | None = None, url: str = URLS[CHAT],
               custom_id: str | None = None, on_null: str = "raise", schema: Any = None,
               output: str | None = None, overwrite: bool = False, rename_reserved: bool = False,
               max_rows: int | None = None, max_cost: float | None = None, prices: Any = None,
               display_name: str | None = None, progress: bool = True, **params: Any) -> tablejob.TableJob:
        """Create the request table beside the source, start the job(s) on it, and return the handle.

        Parameters
        ----------
        prompt, messages, system, model, url, custom_id, on_null, schema, **params
            As for ``df.llama.submit``.
        backend : str or Backend
            A backend that reads tables (``"vertex"`` or ``Vertex(...)``).
        output : str, optional
            ``bq://project.dataset.table`` for the result table (default: beside
            the source, ``<table>_pdbatch_<run>_results``); it must not exist
            unless ``overwrite=True``.
        overwrite : bool
            Replace an existing result table, and let result columns replace
            source columns of the same name.
        rename_reserved : bool
            Carry columns named like the service's own (``body``, ``response``,
            ``id``, ...) as ``input_<name>`` instead of refusing the call.
        max_rows, max_cost, prices, display_name
            As for frames; checked before anything is created.
        progress : bool
            In Jupyter, show the live status panel (kept updated by a thread).

        Returns
        -------
        TableJob
            ``.wait()`` shows the live status; ``.result()`` writes the result table.
        """
        call = Call(prompt=prompt, messages=messages, system=system, model=model, url=url, custom_id=custom_id,
                    on_null=on_null, params=params, schema=schema)
        options = Options(overwrite=overwrite, rename_reserved=rename_reserved, max_rows=max_rows,
                          max_cost=max_cost, prices=prices, display_name=display_name)
        job = tablejob.submit(self._table, call, get_backend(backend), options, output=output)
        if progress and live_display_available():  # the frames' panel, updated while the notebook goes on
            job.display()
        return job

    def batch_predict(self, prompt: str | None = None, *, progress: bool = True, timeout: float | None = None,
                      **kwargs: Any) -> Any:
        """:meth:`submit`, wait for the job, and write the result table.

        Takes the arguments of :meth:`submit`, plus ``progress`` and ``timeout``
        for the wait.

        Returns
        -------
        TableResult
            ``.table`` (its URI), ``.sample(n)``, ``.count()``, ``.to_pandas(max_rows=...)``.
        """
        job = self.submit(prompt, progress=False, **kwargs)
        job.wait(timeout, progress=progress)
        return job.result(overwrite=bool(kwargs.get("overwrite")))

    def classify(self, prompt: str, *, labels: Sequence[str], output_column: str = "label", calibrate: bool = True,
                 answer_prefix: str = "Answer:", system: str | None = None, model: str | None = None,
                 backend: str | Backend | None = None, custom_id: str | None = None, on_null: str = "raise",
                 output: str | None = None, overwrite: bool = False, rename_reserved: bool = False,
                 max_rows: int | None = None, max_cost: float | None = None, prices: Any = None,
                 display_name: str | None = None, progress: bool = True, timeout: float | None = None,
                 wait: bool = True) -> Any:
        """Label every row with one of ``labels`` into a result table, as ``df.llama.classify`` labels a frame.

        The requests are the ones a frame's classify sends a backend that does
        not score labels: the labels as a JSON schema ``enum``, ``temperature=0``.
        The result table has the source's columns, ``custom_id``, the label
        column (read in SQL from the answer; NULL with the row's ``error`` when
        it is not one of the labels), one FLOAT64 column ``p_<label>`` per
        label (NULL: Vertex AI returns no label probabilities) and ``error``.

        Parameters
        ----------
        prompt : str
            Template filled from each row, e.g. ``"Review: {text}\nIs it positive or negative?"``.
        labels : list of str
            2 to 50 distinct labels; each ``p_<label>`` must be a BigQuery column name.
        output_column : str
            The column that gets the label (a frame's ``output=``; here ``output`` names the result table).
        calibrate, answer_prefix
            As for ``df.llama.classify`` (they matter to a backend that scores labels only).
        system, model, backend, custom_id, on_null, output, overwrite, rename_reserved, max_rows, max_cost, prices, \
display_name, progress, timeout
            As for :meth:`batch_predict`.
        wait : bool
            False: submit and return the :class:`TableJob` at once; its ``result()`` writes the same table.

        Returns
        -------
        TableResult or TableJob
        """
        if output is not None and not str(output).startswith("bq://"):
            raise ConfigError(f"output={output!r} names the result table (bq://project.dataset.table); the label "
                              f"column is output_column={output!r}")
        spec = LabelSpec.make(labels, output=output_column, calibrate=calibrate, prefix=answer_prefix,
                              output_name="output_column")
        call = Call(prompt=prompt, system=system, model=model, custom_id=custom_id, on_null=on_null,
                    classify=spec.record())
        options = Options(overwrite=overwrite, rename_reserved=rename_reserved, max_rows=max_rows,
                          max_cost=max_cost, prices=prices, display_name=display_name)
        job = tablejob.submit(self._table, call, get_backend(backend), options, output=output)
        if not wait:
            if progress and live_display_available():
                job.display()
            return job
        job.wait(timeout, progress=progress)
        return job.result(overwrite=overwrite)

    def retry_failed(self, *, job_id: str | None = None, **kwargs: Any) -> Any:
        """Rerun the failed rows of this result table and write a merged table (see :meth:`TableResult.retry_failed`).

        Parameters
        ----------
        job_id : str, optional
            The job that wrote this table; by default the newest job under
            ``PDBATCH_HOME`` whose result table this is.
        **kwargs
            ``output``, ``overwrite``, ``progress``, ``timeout``, ``display_name``.

        Returns
        -------
        TableResult
        """
        return tableresult.result_of(self._table, job_id).retry_failed(**kwargs)

    def embed(self, prompt: str, **kwargs: Any) -> Any:
        """Embeddings of each row's text: :meth:`batch_predict` with ``url="/v1/embeddings"``."""
        return self.batch_predict(prompt, url=URLS["embeddings"], **kwargs)
