"""The ``df.llama`` accessor: gather the arguments, call :mod:`pdbatch.run`, return its answer.

pandas creates a new accessor object on every attribute access, so it keeps no
state. Each method splits its arguments into a :class:`~pdbatch.call.Call`
(what to send for each row) and :class:`~pdbatch.call.Options` (how to run it)
and calls the plain function of the same name, which works without pandas'
accessor machinery too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from . import run
from .backends import Backend, get_backend
from .call import CacheMode, Call, Options, url_for
from .jobs import sidebyside
from .jobs.job import BatchJob
from .jobs.jobview import show_live
from .jobs.preview import Preview
from .models import CHAT, EMBEDDINGS, URLS, Kind
from .results.classify import LabelSpec

__all__ = ["LlamaAccessor"]

Prices = Mapping[str, tuple[float, float]]


@pd.api.extensions.register_dataframe_accessor("llama")
class LlamaAccessor:
    """Run a language model over every row of the frame as one batch job.

    ``df.llama.batch_predict("Classify this review: {review}")`` fills the
    template from each row, runs one batch job (on the local llama.cpp engine
    unless another backend is given) and returns the frame with the answers.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    # ------------------------------------------------------------ building
    def to_requests(self, prompt: str | None = None, *, messages: str | None = None, system: str | None = None,
                    model: str | None = None, url: str = URLS[CHAT], custom_id: str | None = None,
                    backend: str | Backend | None = None, on_null: str = "raise", **params: Any) -> pd.DataFrame:
        """The request lines this frame would send, as a DataFrame.

        Parameters
        ----------
        prompt : str, optional
            Template filled from each row, e.g. ``"Classify: {review}"``.
        messages : str, optional
            Instead of ``prompt``, a column holding a list of chat messages per row.
        system : str, optional
            A system message put before each row's messages.
        model : str, optional
            Model name; the backend's default otherwise.
        url : str
            ``"/v1/chat/completions"`` (default) or ``"/v1/embeddings"``.
        custom_id : str, optional
            A column of unique ids; default ``row-<position>``.
        backend : str or Backend, optional
            Used to resolve ``model``; the session default otherwise.
        on_null : {"raise", "skip"}
            Rows with a null in a template field: refuse (default) or leave out.
        **params
            Body fields such as ``max_tokens`` (512 unless given; ``None``: no
            cap), ``temperature``, ``top_p``, ``stop``, ``seed``,
            ``response_format``; checked by name, type and range (see
            :mod:`pdbatch.lines.params`). ``extra_body={...}`` sends fields pdbatch
            does not know, unchecked.

        Returns
        -------
        pandas.DataFrame
            Columns ``custom_id``, ``method``, ``url``, ``body`` (a dict), with
            the frame's index and row order.
        """
        call = Call(prompt=prompt, messages=messages, system=system, model=model, url=url, custom_id=custom_id,
                    on_null=on_null, params=params)
        return run.plan(self._frame, call, get_backend(backend))[0].to_frame()

    def to_jsonl(self, path: str | os.PathLike[str], prompt: str | None = None, *, messages: str | None = None,
                 system: str | None = None, model: str | None = None, url: str = URLS[CHAT],
                 custom_id: str | None = None, backend: str | Backend | None = None, on_null: str = "raise",
                 **params: Any) -> int:
        """Write the request lines as JSONL (streamed, in bounded chunks).

        Takes the arguments of :meth:`to_requests` after ``path``.

        Returns
        -------
        int
            The number of lines written.
        """
        call = Call(prompt=prompt, messages=messages, system=system, model=model, url=url, custom_id=custom_id,
                    on_null=on_null, params=params)
        return run.plan(self._frame, call, get_backend(backend))[0].write_jsonl(path)

    def preview(self, prompt: str | None = None, *, messages: str | None = None, system: str | None = None,
                model: str | None = None, backend: str | Backend | None = None, url: str = URLS[CHAT],
                custom_id: str | None = None, on_null: str = "raise", schema: Any = None, cache: CacheMode = True,
                prices: Prices | None = None, labels: Sequence[str] | None = None, output: str = "label",
                calibrate: bool = True, answer_prefix: str = "Answer:", **params: Any) -> Preview:
        """What :meth:`batch_predict` would send and may cost, without sending anything.

        Takes the arguments of :meth:`batch_predict`, plus ``prices`` to
        override the price table: ``{"model-id": (input_per_million, output_per_million)}``
        in US$ for a batch job. With ``labels=`` (and ``output``, ``calibrate``,
        ``answer_prefix``), what :meth:`classify` would send.

        Returns
        -------
        Preview
            A few rendered request lines; rows, unique requests, cache hits;
            prompt tokens per row (the model's tokenizer where the backend has
            one, an approximation otherwise); rows over the context window,
            with the reason each gets when the call runs (they are not sent); and
            for Vertex models an estimated cost (an upper bound: ``max_tokens``
            per answer).
        """
        spec = None if labels is None else LabelSpec.make(labels, output=output, calibrate=calibrate,
                                                          prefix=answer_prefix).record()
        call = Call(prompt=prompt, messages=messages, system=system, model=model, url=url, custom_id=custom_id,
                    on_null=on_null, params=params, schema=schema, classify=spec)
        return run.preview(self._frame, call, backend, Options(cache=cache, prices=prices))

    # --------------------------------------------------------------- jobs
    def submit(self, prompt: str | None = None, *, messages: str | None = None, system: str | None = None,
               model: str | None = None, backend: str | Backend | None = None, custom_id: str | None = None,
               kind: Kind | None = None, url: str | None = None, on_null: str = "raise", overwrite: bool = False,
               progress: bool = True, display_name: str | None = None, schema: Any = None, cache: CacheMode = True,
               max_rows: int | None = None, max_cost: float | None = None, prices: Prices | None = None,
               passthrough: bool = False, rename_reserved: bool = False, **params: Any) -> BatchJob:
        """Submit the batch job and return its handle at once.

        Takes the arguments of :meth:`batch_predict`, plus ``kind="embeddings"``
        (or ``url="/v1/embeddings"``) for an embeddings job and
        ``display_name`` for the job's name in the backend's console. In
        Jupyter, ``progress=True`` shows the live status widget, kept updated by
        a background thread until the job ends; elsewhere nothing is shown.

        Returns
        -------
        BatchJob
            ``job.wait()``, ``job.result()``, ``job.cancel()``; ``job.id`` for
            ``pdbatch.attach`` from another kernel. When every row is answered
            by the response cache, the job has nothing to run and is already
            succeeded. An empty frame (or one whose rows are all skipped)
            cannot be submitted: use ``batch_predict``.
        """
        call = Call(prompt=prompt, messages=messages, system=system, model=model, url=url_for(kind, url),
                    custom_id=custom_id, on_null=on_null, params=params, schema=schema)
        options = Options(cache=cache, overwrite=overwrite, passthrough=passthrough,
                          rename_reserved=rename_reserved, max_rows=max_rows, max_cost=max_cost, prices=prices,
                          display_name=display_name)
        job = run.submit(self._frame, call, backend, options)
        show_live(job, progress)
        return job

    def batch_predict(self, prompt: str | None = None, *, messages: str | None = None, system: str | None = None,
                      model: str | Sequence[Any] | Mapping[str, Any] | None = None,
                      backend: str | Backend | None = None, custom_id: str | None = None, progress: bool = True,
                      on_null: str = "raise", overwrite: bool = False, timeout: float | None = None, schema: Any = None,
                      cache: CacheMode = True, max_rows: int | None = None, max_cost: float | None = None,
                      prices: Prices | None = None, passthrough: bool = False, rename_reserved: bool = False,
                      **params: Any) -> pd.DataFrame:
        """Run a chat model over every row as one batch job and return the frame with the answers.

        Parameters
        ----------
        prompt : str, optional
            Template filled from each row, e.g. ``"Classify this review: {review}"``.
            Fields are plain column names; attribute or index access is refused.
        messages : str, optional
            Instead of ``prompt``, a column holding each row's chat messages.
        system : str, optional
            A system message for every row.
        model : str, tuple, list or dict, optional
            Model name (the backend's default otherwise): for the local backend
            a bundled model or a ``.gguf`` path, for Vertex e.g.
            ``"llama-4-scout-17b-16e-instruct-maas"``; or a ``(backend, model)``
            pair. A list runs the same prompts on each model (entries may be
            pairs) and returns one ``response:<model>`` column (and
            ``error:<model>``, ...) per model; a dict ``{label: model or pair}``
            names those columns ``response:<label>``. Local models run one after
            another (they share this machine's cores), the others at once.
            Anything else is refused.
        backend : str or Backend, optional
            ``"local"`` (default), ``"vertex"``, or a backend object.
        custom_id : str, optional
            A column of unique row ids; default ``row-<position>``.
        progress : bool
            Show live progress while waiting.
        on_null : {"raise", "skip"}
            A null in a template field: refuse the call (default), or keep the
            row with ``error="skipped: null ..."`` and send the others.
        overwrite : bool
            Allow replacing result columns the frame already has.
        timeout : float, optional
            Seconds to wait; then :class:`~pdbatch.errors.JobTimeoutError`
            (the job goes on: ``pdbatch.attach(err.job_id)``).
        schema : dict or pydantic model class, optional
            Ask for JSON answers of this shape (sets ``response_format``) and
            parse them into one typed column per property; an answer that does
            not parse becomes the row's ``error``.
        cache : {True, False, "always"}
            ``True``: identical requests in the frame are sent once, and
            answers already in the response cache (from earlier jobs) are not
            paid for again, for reproducible requests (``temperature=0``, a
            ``seed``, or embeddings). ``"always"``: also for sampled requests.
            ``False``: send every row.
        max_rows, max_cost : optional
            Refuse to submit when more than ``max_rows`` requests would be
            sent, or when the estimated cost (US$, see :meth:`preview`) is above
            ``max_cost``.
        prices : dict, optional
            Batch prices to use instead of the built-in table, as
            ``{"model-id": (input_per_million, output_per_million)}``.
        passthrough : bool
            Also send the frame's columns with the requests, for backends that
            keep them next to the answers (Vertex with ``staging="bq://..."``:
            they land in the BigQuery input and output tables).
        rename_reserved : bool
            With ``passthrough``, send columns named ``id``, ``response``, ...
            (names the service reserves) as ``input_id``, ... instead of refusing.
        **params
            Body fields: ``max_tokens`` (512 unless given; ``None``: no cap),
            ``temperature``, ``top_p``, ``stop``, ``seed``, ``response_format``,
            ...; checked by name, type and range before anything runs, and
            refused where the backend cannot honour them. ``extra_body={...}``
            sends fields pdbatch does not know, unchecked.

        Returns
        -------
        pandas.DataFrame
            A new frame: the original columns, index and order, plus
            ``response``, ``finish_reason``, ``prompt_tokens``,
            ``completion_tokens`` and ``error`` (missing where the row succeeded).

        Raises
        ------
        JobError
            The job as a whole failed (a failed row is not an exception: see ``error``).
        """
        options = Options(cache=cache, overwrite=overwrite, passthrough=passthrough,
                          rename_reserved=rename_reserved, max_rows=max_rows, max_cost=max_cost, prices=prices)
        models = sidebyside.parse_models(model, backend)
        if isinstance(models, list):
            call = Call(prompt=prompt, messages=messages, system=system, custom_id=custom_id, on_null=on_null,
                        params=params, schema=schema)
            return sidebyside.compare(self._frame, call, models, options, progress=progress, timeout=timeout)
        backend, name = models
        call = Call(prompt=prompt, messages=messages, system=system, model=name, custom_id=custom_id,
                    on_null=on_null, params=params, schema=schema)
        return run.batch_predict(self._frame, call, backend, options, progress=progress, timeout=timeout)

    def classify(self, prompt: str, *, labels: Sequence[str], output: str = "label", calibrate: bool = True,
                 answer_prefix: str = "Answer:", system: str | None = None, model: str | None = None,
                 backend: str | Backend | None = None, custom_id: str | None = None, progress: bool = True,
                 on_null: str = "raise", overwrite: bool = False, timeout: float | None = None, cache: CacheMode = True,
                 max_rows: int | None = None, max_cost: float | None = None, prices: Prices | None = None,
                 wait: bool = True, display_name: str | None = None) -> pd.DataFrame | BatchJob:
        """Label every row with one of ``labels``, with each label's probability.

        On the local engine each label is scored as the continuation of the
        chat-formatted prompt plus ``answer_prefix`` (one pass per row, no
        generation), calibrated against the same template filled with
        content-free text ("N/A", "", "[MASK]"), and the most probable label
        is chosen. Other backends generate the label, constrained to the
        labels by a JSON schema ``enum``; their probability columns are NaN.

        Parameters
        ----------
        prompt : str
            Template filled from each row, e.g. ``"Review: {review}\nIs it positive or negative?"``.
        labels : list of str
            2 to 50 distinct labels (taken literally: braces are text).
        output : str
            The column that gets the chosen label.
        calibrate : bool
            Subtract the content-free log-probabilities before the softmax
            (False: the raw probabilities).
        answer_prefix : str
            Text that opens the answer before the label (local engine).
        system, model, backend, custom_id, progress, on_null, overwrite, timeout, cache, max_rows, max_cost, prices
            As in :meth:`batch_predict`.
        wait : bool
            False: submit and return the :class:`BatchJob` at once; its
            ``result()`` has the same columns.
        display_name : str, optional
            With ``wait=False``: the job's name in the backend's console.

        Returns
        -------
        pandas.DataFrame or BatchJob
            The frame plus ``output`` (the label), one float column
            ``p_<label>`` per label (summing to 1 per row; NaN where the
            backend gives no probabilities) and ``error``.
        """
        spec = LabelSpec.make(labels, output=output, calibrate=calibrate, prefix=answer_prefix)
        call = Call(prompt=prompt, system=system, model=model, custom_id=custom_id, on_null=on_null,
                    classify=spec.record())
        options = Options(cache=cache, overwrite=overwrite, max_rows=max_rows, max_cost=max_cost, prices=prices,
                          display_name=display_name)
        if not wait:
            job = run.submit(self._frame, call, backend, options)
            show_live(job, progress)
            return job
        return run.batch_predict(self._frame, call, backend, options, progress=progress, timeout=timeout)

    def embed(self, prompt: str | None = None, *, model: str | None = None, backend: str | Backend | None = None,
              custom_id: str | None = None, progress: bool = True, on_null: str = "raise", overwrite: bool = False,
              timeout: float | None = None, cache: CacheMode = True, max_rows: int | None = None,
              max_cost: float | None = None, prices: Prices | None = None, **params: Any) -> pd.DataFrame:
        """Embed every row's text as one batch job.

        Parameters
        ----------
        prompt : str
            Template for the text to embed, e.g. ``"{title}: {abstract}"``.
        model : str, optional
            An embeddings model (local default ``multilingual-e5-small``; on
            Vertex ``"gemini-embedding-001"`` by default).
        backend, custom_id, progress, on_null, overwrite, timeout, cache, max_rows, max_cost, prices
            As in :meth:`batch_predict`.
        **params
            Body fields such as ``dimensions``, or locally ``input_type="query"``
            (local e5 models embed as passages by default); checked as in
            :meth:`batch_predict`.

        Returns
        -------
        pandas.DataFrame
            The frame plus ``embedding`` (a 1-D float32 numpy array per row) and ``error``.
        """
        call = Call(prompt=prompt, model=model, url=URLS[EMBEDDINGS], custom_id=custom_id, on_null=on_null,
                    params=params)
        options = Options(cache=cache, overwrite=overwrite, max_rows=max_rows, max_cost=max_cost, prices=prices)
        return run.batch_predict(self._frame, call, backend, options, progress=progress, timeout=timeout)

    def retry_failed(self, *, backend: str | Backend | None = None, job_id: str | None = None, progress: bool = True,
                     timeout: float | None = None, **params: Any) -> pd.DataFrame:
        """Send again only this result frame's failed rows; return it with their new answers.

        Parameters
        ----------
        backend : str or Backend, optional
            Where to send them (default: the backend of the job the frame came from).
        job_id : str, optional
            That job, when the frame no longer remembers it (``df.attrs``).
        progress, timeout
            As in :meth:`batch_predict`.
        **params
            Body fields to change for the retry, e.g. ``max_tokens=512``.

        Returns
        -------
        pandas.DataFrame
            The frame with the retried rows' result columns replaced; the rows
            that had succeeded are kept as they were. Without ``backend`` or
            ``params``, rows whose error is sure to come back (a prompt over the
            context window, an invalid request) are not sent again: a warning
            names them, with why and what would help.
        """
        return run.retry_failed(self._frame, job_id=job_id, backend=backend, progress=progress,
                                timeout=timeout, **params)
