"""The ``df.llama`` accessor: validate -> build -> run -> join, and nothing else.

pandas creates a new accessor object on every attribute access, so it keeps no
state: each method checks its arguments, calls the plain functions in
:mod:`pdbatch.requests` and :mod:`pdbatch.job`, and returns what they return.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from .backends import Backend, get_backend
from .display import live_display_available
from .errors import ConfigError
from .job import BatchJob, check_columns, empty_result, submit
from .models import CHAT, EMBEDDINGS, URLS, Kind, kind_of_url
from .requests import RequestPlan, build_requests

__all__ = ["LlamaAccessor"]


@pd.api.extensions.register_dataframe_accessor("llama")
class LlamaAccessor:
    """Run a language model over every row of the frame as one batch job.

    ``df.llama.batch_predict("Classify this review: {review}")`` fills the
    template from each row, runs one batch job (on the local llama.cpp engine
    unless another backend is given) and returns the frame with the answers.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    # -------------------------------------------------------------- helpers
    def _plan(
        self,
        prompt: str | None,
        *,
        messages: str | None,
        system: str | None,
        model: str | None,
        backend: Backend,
        url: str,
        custom_id: str | None,
        on_null: str,
        params: dict[str, Any],
    ) -> RequestPlan:
        kind = kind_of_url(url)
        return build_requests(
            self._frame,
            prompt,
            messages=messages,
            system=system,
            model=backend.model_name(model, kind),
            url=url,
            custom_id=custom_id,
            on_null=on_null,
            params=params,
        )

    # ------------------------------------------------------------ building
    def to_requests(
        self,
        prompt: str | None = None,
        *,
        messages: str | None = None,
        system: str | None = None,
        model: str | None = None,
        url: str = URLS[CHAT],
        custom_id: str | None = None,
        backend: str | Backend | None = None,
        on_null: str = "raise",
        **params: Any,
    ) -> pd.DataFrame:
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
            Body fields such as ``max_tokens``, ``temperature``, ``top_p``,
            ``stop``, ``seed``, ``response_format``.

        Returns
        -------
        pandas.DataFrame
            Columns ``custom_id``, ``method``, ``url``, ``body`` (a dict), with
            the frame's index and row order.
        """
        be = get_backend(backend)
        plan = self._plan(prompt, messages=messages, system=system, model=model, backend=be, url=url,
                          custom_id=custom_id, on_null=on_null, params=params)
        return plan.to_frame()

    def to_jsonl(
        self,
        path: str | os.PathLike[str],
        prompt: str | None = None,
        *,
        messages: str | None = None,
        system: str | None = None,
        model: str | None = None,
        url: str = URLS[CHAT],
        custom_id: str | None = None,
        backend: str | Backend | None = None,
        on_null: str = "raise",
        **params: Any,
    ) -> int:
        """Write the request lines as JSONL (streamed, in bounded chunks).

        Takes the arguments of :meth:`to_requests` after ``path``.

        Returns
        -------
        int
            The number of lines written.
        """
        be = get_backend(backend)
        plan = self._plan(prompt, messages=messages, system=system, model=model, backend=be, url=url,
                          custom_id=custom_id, on_null=on_null, params=params)
        return plan.write_jsonl(path)

    # --------------------------------------------------------------- jobs
    def submit(
        self,
        prompt: str | None = None,
        *,
        messages: str | None = None,
        system: str | None = None,
        model: str | None = None,
        backend: str | Backend | None = None,
        custom_id: str | None = None,
        kind: Kind | None = None,
        url: str | None = None,
        on_null: str = "raise",
        overwrite: bool = False,
        progress: bool = True,
        display_name: str | None = None,
        passthrough: bool = False,
        rename_reserved: bool = False,
        **params: Any,
    ) -> BatchJob:
        """Submit the batch job and return its handle at once.

        Takes the arguments of :meth:`batch_predict`, plus ``kind="embeddings"``
        (or ``url="/v1/embeddings"``) for an embeddings job. In Jupyter,
        ``progress=True`` shows the live status widget, kept updated by a
        background thread until the job ends; elsewhere nothing is shown.

        Returns
        -------
        BatchJob
            ``job.wait()``, ``job.result()``, ``job.cancel()``; ``job.id`` for
            ``pdbatch.attach`` from another kernel. An empty frame (or one whose
            rows are all skipped) cannot be submitted: use ``batch_predict``.
        """
        be = get_backend(backend)
        url = _url(kind, url)
        check_columns(self._frame, kind_of_url(url), overwrite)
        plan = self._plan(prompt, messages=messages, system=system, model=model, backend=be, url=url,
                          custom_id=custom_id, on_null=on_null, params=params)
        if len(plan.positions) == 0:
            raise ConfigError("nothing to submit: the frame is empty or every row was skipped "
                              "(batch_predict returns the empty result without a job)")
        job = submit(self._frame, plan, be, custom_id_column=custom_id, overwrite=overwrite,
                     display_name=display_name, passthrough=passthrough,
                     rename_reserved=rename_reserved)
        # In Jupyter the status widget updates from a thread while the notebook
        # goes on; elsewhere there is nothing to show without blocking.
        if progress and live_display_available():
            job.display()
        return job

    def batch_predict(
        self,
        prompt: str | None = None,
        *,
        messages: str | None = None,
        system: str | None = None,
        model: str | None = None,
        backend: str | Backend | None = None,
        custom_id: str | None = None,
        progress: bool = True,
        on_null: str = "raise",
        overwrite: bool = False,
        timeout: float | None = None,
        passthrough: bool = False,
        rename_reserved: bool = False,
        **params: Any,
    ) -> pd.DataFrame:
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
        model : str, optional
            Model name (the backend's default otherwise): for the local backend
            a bundled model or a ``.gguf`` path, for Vertex e.g.
            ``"llama-3.3-70b-instruct-maas"``.
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
        passthrough : bool
            Also send the frame's columns with the requests, for backends that
            keep them next to the answers (Vertex with ``staging="bq://..."``:
            they land in the BigQuery input and output tables).
        rename_reserved : bool
            With ``passthrough``, send columns named ``id``, ``response``, ...
            (names the service reserves) as ``input_id``, ... instead of refusing.
        **params
            Body fields: ``max_tokens``, ``temperature``, ``top_p``, ``stop``,
            ``seed``, ``response_format``, ...

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
        return self._run(prompt, messages=messages, system=system, model=model, backend=backend,
                         custom_id=custom_id, progress=progress, on_null=on_null, overwrite=overwrite,
                         timeout=timeout, url=URLS[CHAT], params=params, passthrough=passthrough,
                         rename_reserved=rename_reserved)

    def embed(
        self,
        prompt: str | None = None,
        *,
        model: str | None = None,
        backend: str | Backend | None = None,
        custom_id: str | None = None,
        progress: bool = True,
        on_null: str = "raise",
        overwrite: bool = False,
        timeout: float | None = None,
        **params: Any,
    ) -> pd.DataFrame:
        """Embed every row's text as one batch job.

        Parameters
        ----------
        prompt : str
            Template for the text to embed, e.g. ``"{title}: {abstract}"``.
        model : str, optional
            An embeddings model (local default ``multilingual-e5-small``; on
            Vertex e.g. ``"multilingual-e5-large-instruct-maas"``).
        backend, custom_id, progress, on_null, overwrite, timeout
            As in :meth:`batch_predict`.
        **params
            Body fields such as ``input_type="query"`` (local e5 models embed as
            passages by default).

        Returns
        -------
        pandas.DataFrame
            The frame plus ``embedding`` (a 1-D float32 numpy array per row) and ``error``.
        """
        return self._run(prompt, messages=None, system=None, model=model, backend=backend,
                         custom_id=custom_id, progress=progress, on_null=on_null, overwrite=overwrite,
                         timeout=timeout, url=URLS[EMBEDDINGS], params=params)

    def _run(self, prompt: str | None, *, messages: str | None, system: str | None, model: str | None,
             backend: str | Backend | None, custom_id: str | None, progress: bool, on_null: str,
             overwrite: bool, timeout: float | None, url: str, params: dict[str, Any],
             passthrough: bool = False, rename_reserved: bool = False) -> pd.DataFrame:
        be = get_backend(backend)
        check_columns(self._frame, kind_of_url(url), overwrite)
        plan = self._plan(prompt, messages=messages, system=system, model=model, backend=be, url=url,
                          custom_id=custom_id, on_null=on_null, params=params)
        if len(plan.positions) == 0:
            return empty_result(self._frame, plan, overwrite)
        job = submit(self._frame, plan, be, custom_id_column=custom_id, overwrite=overwrite,
                     passthrough=passthrough, rename_reserved=rename_reserved)
        return job.wait(timeout, progress=progress).result()


def _url(kind: Kind | None, url: str | None) -> str:
    if kind is not None and kind not in (CHAT, EMBEDDINGS):
        raise ConfigError(f"kind={kind!r}: use 'chat' or 'embeddings'")
    if url is not None:
        if kind is not None and kind_of_url(url) != kind:
            raise ConfigError(f"kind={kind!r} contradicts url={url!r}")
        return url
    return URLS[kind or CHAT]
