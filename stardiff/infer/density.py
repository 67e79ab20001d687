"""A trained model and its inference API: samples, summaries, quantiles, joint samples.

Inputs are rows of *given* values in physical units (a mapping, a pandas/polars
DataFrame or an Arrow table; missing or NaN = not given). Any number of columns may be
given, more than the training context included, since the encoder has no positional
encoding. Work is chunked over rows and draws, and the encoder over rows, so that the memory of
the activations stays under ``max_memory`` (counted in :mod:`stardiff.infer.memory`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from stardata.numbers import COUNT, SEED, Range, check_number
from stardiff import persist
from stardiff._version import __version__
from stardiff.errors import GivenValueError, ModelFileError
from stardiff.infer.guards import check_finite, warn_out_of_range
from stardiff.infer.inputs import encode_inputs, given_matrix, input_width
from stardiff.infer.memory import ChunkPlan, JointPlan, chain_plan, sample_plan, scores_materialized
from stardiff.model import (
    BlockNoise,
    DensityNetwork,
    DiffusionHead,
    DistilledHead,
    NetworkConfig,
    resolve_sampler,
    solve,
)
from stardiff.transforms import Preprocessor
from stardiff.uncertainty import ErrorFeatures

__all__ = ["FORMAT", "FORMAT_VERSION", "DensityModel", "load"]

FORMAT = "stardiff-model"
FORMAT_VERSION = 1


class DensityModel:
    """A trained network with its preprocessing.

    Parameters
    ----------
    network : DensityNetwork
    preprocessor : Preprocessor
        Vocabulary, transforms and standardization the network was trained with.
    requestable : sequence of str
        Columns the model was trained to output.
    meta : dict, optional
        Recipe and training summary, kept in ``config.json``.
    """

    def __init__(
        self, network, preprocessor, requestable: Sequence[str], meta=None, error_features=None
    ):
        self.network = network.eval()
        self.pre = preprocessor
        self.requestable = list(requestable)
        self.meta = dict(meta or {})
        # bytes of activations at once (besides the weights, the given rows and the samples
        # returned): chunks of rows × draws, encoder passes and head tiles are cut to fit
        self.max_memory = 2 * 1024**3
        self.sampler: str | None = None  # default of sample()'s ``sampler`` (see SAMPLERS)
        self.steps: int | None = None  # default of sample()'s ``steps``
        self.bf16: bool | None = None  # bf16 autocast when sampling; None = on CUDA only
        self.folder: Path | None = None  # where it was saved or loaded from
        #: Distilled heads by their steps K (``sampler="distilled"``): loaded from the folder
        #: on first use (:meth:`student`), or put here by :func:`stardiff.train.distill`.
        self.students: dict[int, DistilledHead] = {}
        self.default_student: int | None = None  # K of sampler="distilled" without steps
        #: How the inputs' measurement errors are read (``data.errors``), or None
        self.error_features: ErrorFeatures | None = error_features
        if bool(error_features) != network.config.input_errors:
            raise ValueError("a network with input errors needs its error features, and only it")

    # ------------------------------------------------------------------ properties
    @property
    def columns(self) -> tuple[str, ...]:
        """The model's vocabulary: every column it knows, in token order.

        Any of them may be given; :attr:`requestable` lists those it can also output.
        """
        return self.pre.vocab.names

    @property
    def device(self) -> torch.device:
        """The device the network's weights are on (``cpu``, ``cuda:0``, ...)."""
        return self.network.schedule.betas.device

    def to(self, device: str | torch.device) -> DensityModel:
        """Move the network to a device, in place.

        Parameters
        ----------
        device : str or torch.device
            Where to sample from now on, e.g. ``"cuda"`` or ``"cpu"``.

        Returns
        -------
        DensityModel
            This model (for chaining).
        """
        self.network.to(device)
        for student in self.students.values():
            student.to(device)
        return self

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict:
        """The JSON-ready description that :meth:`save` writes as ``config.json``.

        Returns
        -------
        dict
            The format and its version, the package version, the network's hyper-parameters,
            the noise schedule, the requestable columns, the preprocessing (vocabulary,
            transforms, standardization) and the recipe and training summary (``meta``).
        """
        c = self.network.config
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "stardiff_version": __version__,
            "network": c.to_dict(),
            "schedule": {
                "kind": "sigmoid",
                "steps": c.steps,
                "beta_start": c.beta_start,
                "beta_end": c.beta_end,
                "s_range": [-6.0, 6.0],
            },
            "requestable": self.requestable,
            **self.pre.to_dict(),
            **({"errors": self.error_features.to_dict()} if self.error_features else {}),
            **self.meta,
        }

    def save(self, folder: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``folder`` (atomically)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        persist.save_model_files(folder, self.config(), self.network)
        self.folder = folder
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> DensityModel:
        """Load a model folder (JSON + safetensors; nothing is unpickled)."""
        from stardiff.devices import resolve_device

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"model folder not found: {folder}")
        dev = resolve_device(device, "--device")
        path = folder / persist.CONFIG
        cfg = persist.read_json(path)
        if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
            raise ModelFileError(f"{path}: not a {FORMAT} config")
        if not isinstance(cfg.get("format_version", 0), int):
            raise ModelFileError(f"{path}: format_version must be an integer")
        if cfg.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(
                f"{folder}: model format {cfg['format_version']} is newer than "
                f"this stardiff understands ({FORMAT_VERSION}); upgrade stardiff"
            )
        try:  # a hand-edited config fails here, naming the file, not deep in torch
            net = DensityNetwork(NetworkConfig(**cfg["network"]))
            pre = Preprocessor.from_dict(cfg)
            requestable = [str(c) for c in cfg["requestable"]]
            for c in requestable:
                pre.vocab.id(c)
            errors = ErrorFeatures.from_dict(cfg["errors"]) if "errors" in cfg else None
            model = cls(
                net,
                pre,
                requestable,
                {k: cfg[k] for k in ("recipe", "training") if k in cfg},
                errors,
            )
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
            raise ModelFileError(
                f"{path}: not a valid model config ({type(e).__name__}: {e}); "
                "was it edited by hand?"
            ) from None
        persist.load_weights(folder / persist.WEIGHTS, net)
        persist.check_pair(folder)  # the config the weights were saved with, not another
        model = model.to(dev)
        model.folder = folder
        return model

    def student(self, steps: int | None = None) -> DistilledHead:
        """The distilled head of ``steps`` network evaluations (None: the default one).

        Made by ``stardiff distill`` (:func:`stardiff.train.distill`) and saved beside the model
        (``distilled-K.safetensors``, ``distilled.json``); loaded from the model's folder on
        first use. A model without one (or without one of ``steps``) is a one-line
        :class:`~stardiff.errors.ModelFileError`.

        Parameters
        ----------
        steps : int, optional
            ``K``; default the last distilled (``default_student``, or the folder's default).

        Returns
        -------
        DistilledHead
        """
        k = self.default_student if steps is None else int(steps)
        if k in self.students:
            return self.students[k]
        if self.folder is None:
            raise ModelFileError(
                "this model has no distilled head (it was never saved: save it, then "
                "`stardiff distill FOLDER --steps 4`)"
            )
        c = self.network.config
        head = DiffusionHead(c.dim, c.head_width, c.head_layers, c.steps)
        entry = persist.load_distilled(self.folder, k, head)
        student = DistilledHead(head, entry["steps"]).eval().to(self.device)
        student.info = entry
        self.students[len(student.steps)] = student
        if k is None:
            self.default_student = len(student.steps)
        return student

    def _student(self, how) -> DistilledHead | None:
        """The distilled head a resolved sampler ``how`` samples with (None: the network's)."""
        return self.students[how[1]] if how[0] == "distilled" else None

    # ------------------------------------------------------------------ inputs
    def _column(self, name: str) -> int:
        return self.pre.vocab.id(name) - 1

    def _request_list(self, request) -> tuple[list[str], bool]:
        single = isinstance(request, str)
        names = [request] if single else list(request)
        if not names:
            raise ValueError("request at least one column")
        for n in names:
            self._column(n)  # unknown names raise, listing the valid ones
            if n not in self.requestable:
                raise KeyError(
                    f"column {n!r} is not requestable; requestable: {', '.join(self.requestable)}"
                )
        return names, single

    def given_matrix(self, given) -> tuple[np.ndarray, bool]:
        """Physical given rows → (R, V) float64 with NaN; also whether it was one row."""
        return given_matrix(given, len(self.columns), self._column)

    # ------------------------------------------------------------------ sampling core
    def _encode_inputs(self, z: np.ndarray, width: int | None = None):
        """Standardized (R, V) with NaN → padded tokens/values/errors tensors of the present
        ones (``width`` token positions; by default the most values present in a row).

        ``z`` may be (R, 2V): the values, then their error features (errors None without)."""
        V = len(self.columns)
        zv, ez = (z[:, :V], z[:, V:]) if z.shape[1] == 2 * V else (z, None)
        return encode_inputs(zv, self.device, width, ez)

    def _scores(self) -> bool:
        """Whether this device's attention kernel writes the full score matrices."""
        dtype = torch.bfloat16 if self._bf16() else torch.float32
        return scores_materialized(self.network.config, self.device, dtype)

    def _sample_plan(self, n_rows: int, width: int, n: int) -> ChunkPlan:
        """Chunks, encoder passes and head tiles of 1-D sampling under ``max_memory``."""
        return sample_plan(
            self.network.config,
            n_rows,
            len(self.columns),
            width,
            n,
            self.max_memory,
            device=self.device,
            scores=self._scores(),
        )

    def _joint_plan(self, n_rows: int, n_requested: int, n: int) -> JointPlan:
        """Chunks, chains in flight and head tiles of joint sampling under ``max_memory``."""
        return chain_plan(
            self.network.config,
            n_rows,
            len(self.columns),
            n_requested,
            n,
            self.max_memory,
            device=self.device,
            scores=self._scores(),
        )

    @torch.no_grad()
    def _sample_z(self, z: np.ndarray, column: int, n: int, seed: int, how) -> np.ndarray:
        """Standardized samples (R, n) of ``column`` given standardized rows ``z``.

        Work is chunked over whole noise blocks of rows and draws so that memory stays
        under ``max_memory`` and the samples do not depend on the chunking (bit for bit at
        one thread; at several, a threaded matmul may round differently, ~1e-8).
        """
        with self._autocast():
            return self._sample_chunks(z, column, n, seed, how)

    def _bf16(self) -> bool:
        return self.device.type == "cuda" if self.bf16 is None else bool(self.bf16)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._bf16())

    def _condition(self, tokens, values, errors, column: int, how=None) -> list[torch.Tensor]:
        """The head's condition projections of rows asking for ``column``, (R, 1, width);
        the distilled head's when the resolved sampler ``how`` is ``"distilled"``."""
        net = self.network
        head = net.head if how is None or how[0] != "distilled" else self._student(how).head
        req = torch.full((tokens.shape[0],), column + 1, device=self.device)
        cond = head.project_condition(net.condition(tokens, values, req, None, errors))
        return [c.unsqueeze(1) for c in cond]  # broadcast over draws, never repeated

    def _conditions(
        self, z: np.ndarray, column: int, encode: int, width: int | None = None, how=None
    ) -> list[torch.Tensor]:
        """:meth:`_condition` of standardized rows ``z``, encoded ``encode`` rows at a time
        (each row's condition does not depend on the rows encoded with it)."""
        R = z.shape[0]
        pad = () if width is None else (width,)
        if R <= encode:
            return self._condition(*self._encode_inputs(z, *pad), column, how)
        out = None
        for a in range(0, R, encode):
            part = self._condition(*self._encode_inputs(z[a : a + encode], *pad), column, how)
            if out is None:
                out = [p.new_empty((R, *p.shape[1:])) for p in part]
            for o, p in zip(out, part, strict=True):
                o[a : a + encode] = p
        return out

    def _sample_chunks(self, z: np.ndarray, column: int, n: int, seed: int, how) -> np.ndarray:
        R = z.shape[0]
        out = np.empty((R, n), dtype=np.float64)
        width = input_width(z[:, : len(self.columns)])  # every chunk: the same positions
        plan = self._sample_plan(R, width, n)
        for r0 in range(0, R, plan.rows):
            rows = slice(r0, min(R, r0 + plan.rows))
            self._sample_rows(z, rows, column, n, seed, how, plan, width, out)
        return out

    def _sample_rows(self, z, rows: slice, column, n, seed, how, plan: ChunkPlan, width, out):
        """One chunk of rows: encode them, then draw their samples ``plan.draws`` at a time."""
        cond = self._conditions(z[rows], column, plan.encode, width, how)
        student = self._student(how)
        for d0 in range(0, n, plan.draws):
            ds = slice(d0, min(n, d0 + plan.draws))
            noise = BlockNoise(seed, column, rows, ds, self.device)
            x = solve(self.network, cond, noise, how, plan.tile, student)
            out[rows, ds] = x.double().cpu().numpy()  # the solvers keep x in fp32
            del x  # before the next chunk of draws

    def _how(self, sampler: str | None, steps: int | None, eta: float) -> tuple:
        """(sampler, steps, eta), or the model's defaults → (method, K, eta)."""
        sampler, steps = sampler or self.sampler, steps if steps is not None else self.steps
        eta = check_number(eta, "eta", ETA)
        how = resolve_sampler(self.network.config.steps, sampler, steps, eta)
        if how[0] == "distilled":  # K is the student's: loaded (or refused) now
            how = (how[0], len(self.student(how[1]).steps), 0.0)
        return how

    @staticmethod
    def _seed(seed: int | None) -> int:
        if seed is None:
            return int(np.random.SeedSequence().entropy % 2**63)
        return check_number(seed, "seed", SEED)

    # ------------------------------------------------------------------ public API
    def check_request(self, request: str | Sequence[str]) -> list[str]:
        """The requested column names, checked.

        Raises
        ------
        ValueError
            Nothing requested.
        KeyError
            An unknown or non-requestable column (the message lists the valid ones).
        """
        return self._request_list(request)[0]

    def resolved_sampler(self, sampler: str | None = None, steps: int | None = None):
        """The sampler and steps a call given these would use: ``(method, steps)``.

        ``None`` takes the model's settings (``self.sampler``, ``self.steps``), and where those
        are ``None`` too the package's default (``dpm2``, 20 steps); a bad name or step count,
        or a distilled student that is not there, raises here.
        """
        return self._how(sampler, steps, 0.0)[:2]

    def sample(
        self,
        given=None,
        request="",
        n: int = 1000,
        *,
        seed: int | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        eta: float = 0.0,
        errors=None,
    ):
        """Draw ``n`` samples of each requested column's 1-D density given each row.

        Parameters
        ----------
        given : mapping, DataFrame or Arrow table, optional
            Given values in physical units; NaN/missing = not given. A mapping of
            scalars is one row. ``None`` or ``{}`` = no condition (unconditional).
        request : str or list of str
            Requested column(s); each gets its own 1-D density given the same inputs.
        n : int
            Draws per row.
        seed : int, optional
            Seed of the sampler's random numbers; the same seed gives the same samples.
        sampler : {"ancestral", "ddim", "dpm2", "distilled"}, optional
            The full ``T``-step ancestral chain, or a few-step sampler over ``steps`` of
            the training steps: DDIM (``eta`` = 0 deterministic) or the second-order
            DPM-Solver++ ("dpm2", the default: ``DEFAULT_SAMPLER``, or the model's
            ``sampler`` attribute when set); or "distilled", the student head that
            ``stardiff distill`` saved beside the model (K ≤ 4 evaluations, :meth:`student`).
        steps : int, optional
            Network evaluations of a few-step sampler (default ``DEFAULT_STEPS`` = 20); for
            "distilled", which saved student (default the last distilled).
        eta : float
            Noise of the DDIM sampler, 0 to 1 (0 = deterministic, 1 = as much as the
            ancestral chain).
        errors : mapping, DataFrame or Arrow table, optional
            Measurement errors of the given values, by column, in physical units (the rows
            of ``given``), for a model trained with ``data.errors``; a value without one
            (missing, NaN or <= 0) has "error not known". Refused by a model trained
            without errors.

        Returns
        -------
        ndarray or dict of ndarray
            Shape ``(rows, n)`` (``(n,)`` for one row given as scalars) in physical
            units; a dict keyed by column when ``request`` is a list.
        """
        names, single = self._request_list(request)
        n = _count(n, "n")
        phys, one_row = self.given_matrix(given)
        z, far = self._encode_given(phys)
        if errors is not None:
            if self.error_features is None:
                raise ValueError(
                    "this model was trained without input errors (recipe key data.errors); "
                    "give values only"
                )
            sig, _ = self.given_matrix(errors)
            if sig.shape[0] != phys.shape[0]:
                raise ValueError(
                    f"errors has {sig.shape[0]} row(s), given has {phys.shape[0]}: one error "
                    "row for each given row"
                )
            ez = self.error_features.encode(self.pre, phys, sig)
            z = np.concatenate([z, ez], axis=1)
        seed, how = self._seed(seed), self._how(sampler, steps, eta)
        out = {}
        for name in names:
            j = self._column(name)
            s = self.pre.decode(self._sample_z(z, j, n, seed, how), j)
            check_finite(s, name, far, self.columns)
            out[name] = s[0] if one_row else s
        return out[names[0]] if single else out

    def sample_joint(
        self,
        given=None,
        request: Sequence[str] = (),
        n: int = 1000,
        *,
        seed: int | None = None,
        sampler: str | None = None,
        steps: int | None = None,
    ):
        """Joint samples by chaining 1-D requests (the paper's Fig. 6).

        The first column is drawn given ``given``; each next column is drawn once per
        previous draw, given ``given`` plus the values already drawn in that chain.

        Returns
        -------
        dict of ndarray
            Column → ``(rows, n)`` (or ``(n,)`` for one scalar row); draw ``k`` of every
            column belongs to the same joint sample.
        """
        names, _ = self._request_list(list(request))
        n = _count(n, "n")
        phys, one_row = self.given_matrix(given)
        R = phys.shape[0]
        out = {c: np.empty((R, n)) for c in names}
        for rows, draws, chunk in self.iter_joint(
            given, names, n, seed=seed, sampler=sampler, steps=steps
        ):
            for c in names:
                out[c][rows, draws] = chunk[c]
        return {c: v[0] for c, v in out.items()} if one_row else out

    def iter_joint(
        self,
        given=None,
        request: Sequence[str] = (),
        n: int = 1000,
        *,
        seed: int | None = None,
        sampler: str | None = None,
        steps: int | None = None,
    ) -> Iterator[tuple[slice, slice, dict[str, np.ndarray]]]:
        """Joint samples as :meth:`sample_joint`, in chunks of memory under ``max_memory``.

        Yields ``(rows, draws, chunk)``: the given rows and the draws a chunk covers and a
        dict column → ``(len(rows), len(draws))`` physical samples. The chunks tile the
        (rows × draws) grid row-block by row-block; the samples do not depend on the chunking.
        """
        from stardiff.infer.joint import ChainParts, joint_chunks

        names, _ = self._request_list(list(request))
        n = _count(n, "n")
        phys, _ = self.given_matrix(given)
        z, far = self._encode_given(phys)
        seed, how = self._seed(seed), self._how(sampler, steps, 0.0)
        cols = [self._column(c) for c in names]
        parts = ChainParts(
            network=self.network,
            device=self.device,
            plan=self._joint_plan(z.shape[0], len(cols), n),
            autocast=self._autocast,
            student=self._student(how),
            conditions=self._conditions,
            encode=self._encode_inputs,
            condition=self._condition,
        )
        for rows, draws, zs in joint_chunks(parts, z, cols, n, seed, how):
            chunk = {}
            for k, (name, j) in enumerate(zip(names, cols, strict=True)):
                chunk[name] = self.pre.decode(zs[..., k], j)
                try:
                    check_finite(
                        chunk[name], name, None if far is None else far[rows], self.columns
                    )
                except GivenValueError as e:
                    raise e.shifted(rows.start) from None  # rows of the call, not the chunk
            yield rows, draws, chunk

    def _encode_given(self, phys: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Standardized given rows, and which rows hold a value outside the training range.

        Such values warn (:func:`warn_out_of_range`); values the model cannot take at all (a
        log column's value <= 0, one beyond float32 once standardized) are an error naming the
        column and the row (:class:`stardiff.errors.GivenValueError`).
        """
        ranges = self.meta.get("training", {}).get("ranges", {})
        far = warn_out_of_range(phys, self.columns, ranges)
        return self.pre.encode(phys, where="given"), far

    def quantiles(
        self,
        given=None,
        request="",
        q=(0.16, 0.5, 0.84),
        n: int = 1000,
        *,
        seed: int | None = None,
        sampler: str | None = None,
        steps: int | None = None,
    ):
        """Quantiles ``q`` of each requested density: array (..., len(q)) or dict of them."""
        s = self.sample(given, request, n, seed=seed, sampler=sampler, steps=steps)
        qs = np.asarray(q, dtype=np.float64)
        f = lambda a: np.moveaxis(np.quantile(a, qs, axis=-1), 0, -1)  # noqa: E731
        return {k: f(v) for k, v in s.items()} if isinstance(s, dict) else f(s)

    def summary(
        self,
        given=None,
        request="",
        n: int = 1000,
        *,
        seed: int | None = None,
        sampler: str | None = None,
        steps: int | None = None,
    ):
        """Median and robust std (1.4826·MAD) of each requested density (paper Fig. 4).

        Returns a dict: for each requested column ``c``, ``c`` → median and
        ``c + "_std"`` → robust std, each of shape (rows,) (scalars for one row).
        """
        s = self.sample(given, request, n, seed=seed, sampler=sampler, steps=steps)
        s = s if isinstance(s, dict) else {request: s}
        out = {}
        for k, v in s.items():
            med = np.median(v, axis=-1)
            out[k] = med
            out[f"{k}_std"] = 1.4826 * np.median(np.abs(v - med[..., None]), axis=-1)
        return out

    def predict(self, table, request, **kwargs):
        """Per-row densities of a table, streamed for a Parquet path: see ``stardiff.predict``."""
        from stardiff.predict import predict

        return predict(self, table, request, **kwargs)

    def n_parameters(self) -> int:
        """The number of the network's trainable weights (what ``stardiff fit`` prints)."""
        return self.network.n_parameters()


#: The DDIM sampler's noise: 0 (deterministic) to 1 (the ancestral chain's).
ETA = Range(0.0, 1.0)


def _count(n, name: str) -> int:
    """A number of draws: an integer >= 1 (a float such as 5.0 too), or a one-line error."""
    if isinstance(n, float | np.floating) and float(n).is_integer():
        n = int(n)
    return check_number(n, name, COUNT)


def load(folder: str | Path, device: str = "cpu") -> DensityModel:
    """Load a trained model folder; see :meth:`DensityModel.load`."""
    return DensityModel.load(folder, device)
