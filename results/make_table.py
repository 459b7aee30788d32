"""Write the results tables (results/README.md, and README.md between its results markers)
from the result files results/*.json that `srnn reproduce NAME` writes. Never typed by hand.

    python results/make_table.py
"""
import itertools
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
from scipy.stats import t as student_t
from matplotlib.figure import Figure  # no pyplot: a file only, any machine

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from ref import param_shapes  # noqa: E402
from ref.config import Config  # noqa: E402
from srnn.config import TrainConfig  # noqa: E402
from srnn.analysis import ACTIVE, INFORMATIVE, informative_units  # noqa: E402
from srnn.evaluation import summarize  # noqa: E402
from srnn.loop import changed_settings  # noqa: E402
from ref.errors import ConfigError  # noqa: E402
from srnn.reproduce import (EXTRA_SEEDS, RECIPE_CHOICE, RUNS, SRNN_BEST_Z, SWEEP_Z, TUNED, WEIGHT_DECAY,  # noqa: E402
                             lacks_validation, missing_bounds, run_settings, sweep_name, tuned_training,
                             weight_decay_runs)

DATASETS = ("jsb", "nottingham", "muse", "piano")
NAMES = {"jsb": "JSB", "nottingham": "Nottingham", "muse": "Muse", "piano": "Piano"}
# Published numbers, each with its metric (see the column headers).
PAPER_SRNN = {"jsb": -4.74, "nottingham": -2.94, "muse": -6.28, "piano": -8.20}          # srnn2016, seq-averaged ELBO
POSTER_BEST = {"jsb": -4.82, "nottingham": -3.09, "muse": -6.24, "piano": -8.20}         # srnn2016, best over z
DMM_AUG_IS = {"jsb": 6.288, "nottingham": 2.679, "piano": 7.591, "muse": 6.356}           # boulanger2012, NLL per frame
DMM_AUG_ELBO = {"jsb": 6.773, "nottingham": 2.856, "piano": 7.721, "muse": 6.476}
PYRO_DMM_ELBO = {"jsb": 6.87}
# Boulanger-Lewandowski et al. (2012), standard splits, NLL per frame (frame-weighted)
BOULANGER_RNN = {"jsb": 8.71, "nottingham": 4.46, "muse": 8.13, "piano": 8.37}
BOULANGER_RNN_NADE = {"jsb": 5.19, "nottingham": 2.31, "muse": 5.60, "piano": 7.05}
MODELS = (("", "SRNN"), ("vrnn-", "VRNN"), ("rnn-", "RNN"))  # result-name prefix, label
START, END = "<!-- results:start -->", "<!-- results:end -->"
LATENT_PLOT = "latent_usage.png"
RECIPES = ("the paper's schedule (z from its sweep) or the tuned one (a departure from the paper: 100 epochs, "
           "decay from epoch 41 by 1.05, stopped 20 epochs after the best validation ELBO, z = 10 or 100" +
           "".join(f"; on {NAMES[RUNS[base][1].dataset]} {RUNS[base][1].variant} at z = {RUNS[base][0].z_dim} also "
                   f"with AdamW's weight decay λ = {', '.join(f'{d:g}' for d in decays)}"
                   for base, decays in WEIGHT_DECAY.items()) +
           "), whichever has the higher validation ELBO")


def load_results(directory=HERE):
    """name -> result; a file whose model or training differs from what `srnn reproduce NAME` runs
    now is an error, so no table mixes a stale run in."""
    results = {p.stem: json.loads(p.read_text()) for p in sorted(Path(directory).glob("*.json"))}
    for name, r in results.items():
        try:
            config, tc, _ = run_settings(name)
        except ConfigError:
            sys.exit(f"results/{name}.json: no run of that name (`srnn reproduce --list`)")
        # TrainConfig(**...) fills fields added since with their defaults
        run_tc = TrainConfig(**r["train"])
        model, training = changed_settings(Config(**r["model"]), run_tc, config, tc)
        changed = training + model + (["epochs"] if r["planned_epochs"] != tc.epochs else []) + \
            (["patience"] if run_tc.patience != tc.patience else [])
        if changed:
            sys.exit(f"results/{name}.json was made with other settings ({', '.join(changed)}) than "
                     f"`srnn reproduce {name}` uses now; run it again or delete the file")
    return results


def _value(m, key="sequence_averaged", sign=1.0):
    se = m.get(key + "_se")
    return f"{sign * m[key]:.2f}" + (f" ± {se:.2f}" if se is not None else "")


def _status(r):
    if r is None:
        return "not run"
    state = (f"partial, {r['epochs']}/{r['planned_epochs']} epochs" if r["partial"] else
             f"stopped early, {r['epochs']}/{r['planned_epochs']} epochs" if r.get("stopped_early") else
             f"{r['epochs']} epochs")
    cross = r.get("cross_check")
    agree = " · ref = torch ✓" if cross and cross["agree"] else (" · ref ≠ torch ✗" if cross else "")
    return f"{state}, best {r['best_epoch']}{agree}"


def _iw(r, K, key, sign=1.0):
    m = r and r["test"].get(f"iw_K{K}")
    return _value(m, key, sign) if m else "–"


def _convention(variant):
    """The per-step convention of a variant's tables: srnn2016 sequence-averaged, boulanger2012 frame-weighted."""
    return "sequence_averaged" if variant == "srnn2016" else "frame_weighted"


def recipe_choice(results, dataset, variant):
    """The recipe and z that validation chooses for a dataset and variant: of the tuned recipe's
    z = 10 and z = 100 runs and the paper recipe's (its z sweep on srnn2016, its one run on
    boulanger2012), the one with the highest validation ELBO (the metric of the variant's table).
    The schedule is chosen as z is: a dataset the tuned schedule over-fits keeps the paper's.
    (name, waiting): the chosen run (None before a tuned run has been made) and the runs the
    choice still waits for (not made, or made before the validation ELBO was recorded)."""
    key = _convention(variant)
    tuned, paper = compared_runs(dataset, variant)
    made = [n for n in tuned + paper if n in results and not results[n]["partial"]]
    waiting = [n for n in tuned + paper if n not in made or lacks_validation(n, results[n])]
    if not set(made) & set(tuned):
        return None, waiting
    return max((n for n in made if n not in waiting), key=lambda n: results[n]["valid"][key]), waiting


def compared_runs(dataset, variant):
    """The runs a recipe choice compares: (the tuned recipe's at z = 10 and z = 100 and their
    weight-decay sweeps where they have one, the paper recipe's: its z sweep on srnn2016, its one
    run on boulanger2012)."""
    tuned = [f"{dataset}-{variant}-tuned-z10", f"{dataset}-{variant}-tuned"]
    tuned += [name for base in tuned for name in weight_decay_runs(base)]
    paper = [sweep_name(dataset, z) for z in SWEEP_Z] if variant == "srnn2016" else [f"{dataset}-{variant}"]
    return tuned, paper


def _published(dataset, variant):
    """What a variant's verdicts are judged against: (the published number, whose it is with the
    number to the digits it was published with, sign, the test bound of ours that meets it, those
    digits). srnn2016: the SRNN paper's ELBO; boulanger2012: DMM-Aug's importance-sampled NLL,
    which our −IW bound meets (sign -1: lower is better)."""
    if variant == "srnn2016":
        number, whose, sign, bound, digits = PAPER_SRNN[dataset], "the paper's", 1.0, ("elbo", "sequence_averaged"), 2
    else:
        number, whose, sign, bound, digits = DMM_AUG_IS[dataset], "DMM-Aug's", -1.0, ("iw_K100", "frame_weighted"), 3
    return number, f"{whose} {number:.{digits}f}", sign, bound, digits


def _rounding(gain, se, n, published, sign, digits):
    """A verdict outside the 95% interval (_side) that the published number's rounding could bring
    inside: if the number, printed to `digits`, was rounded from as near ours as half a unit of its
    last digit. The clause that says so, or "" where no such value can."""
    side, half = _side(gain, se, n), 0.5 * 10.0 ** -digits
    if side == 0 or _side(gain - side * half, se, n) != 0:
        return ""
    return f"; {WITHIN} if the published number was rounded from {published + sign * side * half:.{digits + 1}f}"


def chosen_verdict(results, name, dataset, variant):
    """The verdict of chosen run `name` (and its seeds) against the published number (_beats); on
    boulanger2012 at its tightest IW bound. (verdict, the test key of the bound judged)."""
    number, _, sign, (bound, key), digits = _published(dataset, variant)
    bound = bound if sign > 0 else _tightest(results[name])
    return _beats(with_seeds(results, name), number, (bound, key), sign, digits), bound


def check_recipe_choice(results):
    """srnn.reproduce.RECIPE_CHOICE must name the choice the result files make, once they make it
    (while a run it compares is made again, the declared choice stands, as SRNN_BEST_Z's does)."""
    for d, variant in itertools.product(DATASETS, ("srnn2016", "boulanger2012")):
        (name, waiting), declared = recipe_choice(results, d, variant), RECIPE_CHOICE.get(f"{d}-{variant}")
        if declared and not waiting and name != declared:
            sys.exit(f"srnn.reproduce.RECIPE_CHOICE gives {d}-{variant} {declared}, but its runs' validation ELBOs "
                     f"choose {name}")


def _choice_note(results, name, waiting, key):
    """What the recipe table says of a choice: which recipe, z and validation ELBO, and whether it is final."""
    if name is None:
        return f"not chosen: waits for {', '.join(waiting)}"
    note = f"{name}: {_label(name)}, chosen on validation (valid {results[name]['valid'][key]:.3f})"
    return note + (f"; not final: waits for {', '.join(waiting)}" if waiting else "")


def _label(name):
    """A run that a recipe choice compares, in words: its recipe, its z and its weight decay."""
    recipe = "the tuned recipe" if "-tuned" in name else "the paper's recipe"
    decay = RUNS[name][1].weight_decay
    return f"{recipe} at z = {_z(name)}" + (f" with weight decay {decay:g}" if decay else "")


def _without_decay(name):
    """The run whose weight-decay sweep holds run `name` (reproduce.WEIGHT_DECAY), or None."""
    return next((base for base in WEIGHT_DECAY if name in weight_decay_runs(base)), None)


def _z(name):
    """The z of a srnn run of the sweep or of the tuned recipe, from its name (RUNS' configuration)."""
    return RUNS[name][0].z_dim


def _beats(runs, published, metric=("elbo", "sequence_averaged"), sign=1.0, digits=None):
    """Is ours better than a published number (which gives no error of its own)? Ours: test bound
    `metric` of a run and of its other seeds. Over two or more seeds, their mean with its standard
    error over seeds (all score the same pieces: the seed is what moves it); with one, its standard
    error over test pieces. With sign = -1 the published number is an NLL, ours the negated bound,
    and lower is better. The verdict, ours minus the published number, and, given the digits the
    number was printed with, whether its rounding could change the verdict (_rounding)."""
    measured = [r["test"][metric[0]] for r in runs]
    values = [sign * m[metric[1]] for m in measured]
    if len(values) > 1:  # seeds can agree to a few thousandths: three decimals
        (mean, se), n, over, shown = _mean_and_se(values), len(values), f"{len(values)} seeds", 3
    else:
        mean, se, n = values[0], measured[0][metric[1] + "_se"], runs[0]["test"]["num_sequences"]
        over, shown = "test pieces", 2
    diff = mean - published
    verdict = ("no", WITHIN, "yes")[_side(sign * diff, se, n) + 1]
    rounding = "" if digits is None else _rounding(sign * diff, se, n, published, sign, digits)
    return f"{verdict} ({diff:+.{shown}f} ± {se:.{shown}f} over {over}{rounding})"


def _mean_and_se(values):
    """The mean of a number over seeds and its standard error, sd / sqrt(n)."""
    return float(np.mean(values)), float(np.std(values, ddof=1) / np.sqrt(len(values)))


def _side(gain, se, n):
    """The rule of every verdict in the tables: 1 if a gain lies above the 95% interval of a mean
    over n numbers (seeds or test pieces), -1 if below it, 0 within. The interval is Student's:
    ± t standard errors, t the 0.975 quantile with n − 1 degrees of freedom, because the standard
    error is itself estimated from those n; over three seeds t is 4.30, where two standard errors
    would call a difference that chance alone makes about one time in five. For a difference of
    two means, n is the smaller count (Welch's conservative degrees of freedom)."""
    half = _t(n) * se
    return 1 if gain > half else -1 if gain < -half else 0


def _t(n):
    """The half-width of the 95% interval of a mean over n numbers, in standard errors (_side)."""
    return float(student_t.ppf(0.975, n - 1))


WITHIN = "within the 95% interval"  # _side's 0


def tuned_table(results):
    """The recipe chosen on validation beside the paper's configuration and the published numbers
    it aims to beat."""
    out = _header(f"The recipe chosen on validation: {RECIPES}; srnn2016, test ELBO per step, sequence-averaged",
                  ["dataset", "chosen: ELBO", "chosen: ELBO over seeds (mean ± sd, n)", "chosen: ELBO, 10 paths",
                   "chosen: IW K=100", "ours, paper's configuration", "paper (SRNN)", "beats the paper (ours − paper)",
                   "run"])
    for d in DATASETS:
        name, waiting = recipe_choice(results, d, "srnn2016")
        r, paper_recipe = results.get(name), results.get(f"{d}-srnn2016")
        beats = "–" if r is None else chosen_verdict(results, name, d, "srnn2016")[0]
        ours = _value(paper_recipe["test"]["elbo"]) if paper_recipe else "–"
        out.append(f"| {NAMES[d]} | {_value(r['test']['elbo']) if r else '–'} | "
                   f"{_over_seeds(results, name) if r else '–'} | {_paths(r)} | {_iw(r, 100, 'sequence_averaged')} | "
                   f"{ours} | {PAPER_SRNN[d]:.2f} | {beats} | "
                   f"{_choice_note(results, name, waiting, 'sequence_averaged')} |")
    out += _header(f"The recipe chosen on validation: {RECIPES}; boulanger2012, test NLL bounds per frame, "
                   "frame-weighted (lower is better)",
                   ["dataset", "chosen: −IW K=100", "chosen: −IW K=1000", "chosen: −ELBO", "DMM-Aug, importance-sampled",
                    "below DMM-Aug (ours − DMM-Aug, at the largest K)", "run"])
    for d in DATASETS:
        name, waiting = recipe_choice(results, d, "boulanger2012")
        r = results.get(name)
        below = "–" if r is None else chosen_verdict(results, name, d, "boulanger2012")[0]
        out.append(f"| {NAMES[d]} | {_iw(r, 100, 'frame_weighted', -1.0)} | {_iw(r, 1000, 'frame_weighted', -1.0)} | "
                   f"{_value(r['test']['elbo'], 'frame_weighted', -1.0) if r else '–'} | {DMM_AUG_IS[d]:.3f} | "
                   f"{below} | {_choice_note(results, name, waiting, 'frame_weighted')} |")
    return out


def why_section(results):
    """Why each verdict of the recipe tables comes out as it does, from the result files: what each
    step from the paper's configuration to the chosen run changes on test, whether the tuned
    schedule over-fits (its learning curves), how far test lies from validation, where the seed
    poster's sweep lands; then what we think, a sentence for each of these facts that holds."""
    out = ["\n### Why, as the result files measure it\n",
           "Each dataset whose recipe validation has chosen: the steps from the paper's configuration to the "
           "chosen run (test, mean over the seeds each run has), what its learning curves say of the tuned "
           "schedule, test against validation, and what we think follows."]
    for variant in ("srnn2016", "boulanger2012"):
        for d in DATASETS:
            name, waiting = recipe_choice(results, d, variant)
            if name is not None:
                out += _why(results, d, variant, name, waiting)
    return out


def _why(results, d, variant, chosen, waiting):
    """The measured facts behind one dataset's verdict, then what we think, one clause for each
    fact that holds (why_section)."""
    _, whose, sign, (bound, key), _ = _published(d, variant)
    verdict, tightest = chosen_verdict(results, chosen, d, variant)
    beaten = verdict.startswith("yes")
    out = [f"\n**{NAMES[d]} ({variant})**: {chosen}, {_bound_name(tightest)} against {whose}: {verdict}"
           + (f"; not final: waits for {', '.join(waiting)}." if waiting else ".")]
    reasons = []
    steps, gains, (total, total_se, n) = _steps(results, d, variant, chosen, bound, key, sign)
    if steps:
        out.append(steps)
        gain, largest = max(gains)
        se = results[chosen]["test"][bound][key + "_se"]
        if total_se is not None and _side(total, total_se, n) == 0:  # seeds at both ends: the tables' rule
            reasons.append(f"what validation chooses moves the test bound by {total:+.3f} ± {total_se:.3f} over "
                           f"seeds, {WITHIN}: on this corpus the paper's configuration is as good")
        elif total_se is None and abs(total) < se / 2:
            reasons.append(f"what validation chooses moves the test bound by less than half its standard error over "
                           f"pieces ({se:.2f}): on this corpus the paper's configuration is as good")
        elif gain > 0:
            reasons.append(f"the largest gain over the paper's configuration comes with {_label(largest)} ({gain:+.3f})")
        else:
            reasons.append("no step from the paper's configuration improves its test bound")
    curves = _tuned_curves(results, d, variant, key)
    out += [line for line, *_ in curves]
    undecayed = [falls for _, falls, _, decayed in curves if not decayed]
    over_fit = bool(undecayed) and all(undecayed)
    if any(passes for _, _, passes, _ in curves):
        after = ", and over-fits after its peak, so the stopping rule keeps the checkpoint" if over_fit else ""
        reasons.append("the longer schedule passes the paper's on validation" + after)
    elif over_fit:
        reasons.append("the tuned schedule over-fits this corpus before it passes the paper's on validation: "
                       "the paper's early decay of the learning rate acts as early stopping here")
    fit, gap = _fit(results[chosen], key)
    out += [fit] if fit else []
    out.append(_test_against_validation(results, d, variant, chosen))
    poster, poster_within, paper_above = _poster(results, d, key) if variant == "srnn2016" else (None, False, False)
    out += [poster] if poster else []
    if paper_above and beaten:
        reasons.append("the paper's schedule reaches the paper's number at no z of its sweep; the longer "
                       "schedule, chosen on validation, is what passes it")
    elif paper_above and poster_within:
        reasons.append("our sweep lands where the authors' own later sweep (the seed poster) does, below the "
                       "paper's number at every z: we think that number comes from a setting neither the poster "
                       "nor this code reproduces")
    elif over_fit and gap is not None and verdict.startswith("no"):
        every = "every tuned run" if all(falls for _, falls, *_ in curves) else "every tuned run without weight decay"
        fits = (f"the chosen checkpoint fits its training pieces {gap:.2f} nats {_per(variant)} better than its "
                f"validation pieces and {every} over-fits after its peak")
        decay = _decay_gain(results, d, variant, key)
        if decay is None:
            reasons.append(fits + ": we think this corpus is too small for the model without a regulariser, which "
                                  "neither recipe has")
        else:  # the verdict, with the decayed runs among those validation chose from, is still no
            gain, best, seeds = decay
            over = (f"; by {seeds[0]:+.3f} between the means over its {seeds[1]} seeds and the run without decay's "
                    f"{seeds[2]}" if seeds else "")
            reasons.append(fits + f"; weight decay moves the best validation ELBO by {gain:+.3f} at most "
                                  f"({_label(best)}{over}), and the verdict stays no: we think this corpus is too "
                                  f"small for the model, and shrinking its weights does not make up for it")
    if verdict.startswith(WITHIN):
        reasons.append(f"the difference is {WITHIN}, " +
                       ("over test pieces of one seed: more seeds would judge it" if "test pieces" in verdict
                        else "over its seeds: it is not told apart from the published number"))
    if reasons:
        out.append("- What we think: " + "; ".join(reasons) + ".")
    return out


def _decay_gain(results, d, variant, key):
    """How much weight decay raises a tuned run's best validation ELBO, at most over its sweep's
    runs made: (the gain, the run of it, (the gain between the means over that run's seeds and over
    the run without decay's, the two numbers of seeds), None while the run has one seed), or None
    without such runs. Validation chose the run on its first seed; its other seeds say if that holds."""
    tuned, _ = compared_runs(d, variant)
    gains = [(results[n]["valid"][key] - results[base]["valid"][key], n, base)
             for n, base in ((n, _without_decay(n)) for n in tuned)
             if base is not None and base in results and n in results and not results[n]["partial"]]
    if not gains:
        return None
    gain, best, base = max(gains)
    decayed, undecayed = ([r["valid"][key] for r in with_seeds(results, n)] for n in (best, base))
    seeds = (np.mean(decayed) - np.mean(undecayed), len(decayed), len(undecayed)) if len(decayed) > 1 else None
    return gain, best, seeds


def _bound_name(key):
    """How the tables name a test bound of the result files."""
    return "test ELBO" if key == "elbo" else f"test −IW K={key[4:]}"


def _per(variant):
    """The unit of a variant's bounds."""
    return "per step" if variant == "srnn2016" else "per frame"


def _steps(results, d, variant, chosen, bound, key, sign):
    """The runs from the paper's configuration to the chosen one, each changing the z or the
    schedule (the z validation chooses from the sweep, then the tuned schedule), with each one's
    test bound averaged over its seeds: (the sentence, [(gain, run)], (the whole step, its standard
    error over seeds: None unless both ends have two or more, the smaller end's number of seeds));
    (None, [], (0, None, 0)) with one run."""
    names = [f"{d}-{variant}"]
    best_z = best_z_on_validation(results, d) if variant == "srnn2016" else None
    if best_z and best_z != 100:
        names.append(sweep_name(d, best_z))
    base = _without_decay(chosen)
    for name in (base, chosen):  # a chosen run with weight decay: the step to the run without it first
        if name is not None and name != names[-1]:
            names.append(name)
    names = [n for n in names if n in results]
    if len(names) < 2:
        return None, [], (0.0, None, 0)
    runs = [with_seeds(results, n) for n in names]
    values = [[sign * r["test"][bound][key] for r in seeds] for seeds in runs]
    means = [float(np.mean(v)) for v in values]
    parts = [f"{_label(n)}{' (the paper configuration)' if i == 0 else ''}: {m:.3f} ({len(seeds)} "
             f"seed{'s' * (len(seeds) > 1)})" + (f", {sign * (m - means[i - 1]):+.3f}" if i else "")
             for i, (n, m, seeds) in enumerate(zip(names, means, runs))]
    gains = [(sign * (means[i] - means[i - 1]), names[i]) for i in range(1, len(names))]
    first, last = values[0], values[-1]
    fewer = min(len(first), len(last))
    # the two ends are independent trainings: their standard errors add in quadrature
    total_se = float(np.hypot(_mean_and_se(first)[1], _mean_and_se(last)[1])) if fewer > 1 else None
    total = sign * (means[-1] - means[0])
    whole = ("" if total_se is None else f" ± {total_se:.3f} over seeds" if len(gains) == 1
             else f" (in all {total:+.3f} ± {total_se:.3f} over seeds)")
    return (f"- From the paper's configuration to the chosen run ({_bound_name(bound)}; a positive step is a better "
            f"bound): " + "; ".join(parts) + whole + "."), gains, (total, total_se, fewer)


def _tuned_curves(results, d, variant, key):
    """What each tuned run's learning curve says: where its validation ELBO peaked, how far it fell
    after while the training objective rose, and whether its best checkpoint is above the paper
    recipe's best on validation (a run with weight decay: above the same run's without it):
    [(sentence, fell after its peak, passes the paper's, has weight decay)]."""
    tuned, paper = compared_runs(d, variant)
    paper_best = max((results[n]["valid"][key] for n in paper if n in results and "valid" in results[n]), default=None)
    curves = []
    for name in tuned:
        r, base = results.get(name), _without_decay(name)
        if not r or r["partial"] or (base and base not in results):
            continue
        c = r["curve"]
        points = [p for p in zip(c["epoch"], c["valid_elbo"], c["train_elbo"], c["kl_weight"]) if p[1] is not None]
        (e_peak, v_peak, t_peak, w_peak), (e_last, v_last, t_last, _) = max(points, key=lambda p: p[1]), points[-1]
        rose = f", while its training objective rose by {t_last - t_peak:.2f}" if w_peak == 1.0 else ""
        falls = e_last > e_peak and round(v_peak - v_last, 2) > 0  # a fall that prints as 0.00 is none
        fell = (f"fell by {v_peak - v_last:.2f} by epoch {e_last}, its last{rose}" if falls else
                "was still at its peak at its last validation" if e_last == e_peak else
                f"ended within 0.01 of it at epoch {e_last}, its last")
        than = paper_best if base is None else results[base]["valid"][key]
        above = None if than is None else r["valid"][key] - than
        whose = "the paper recipe's best" if base is None else f"{_label(base)}'s (no decay)"
        versus = "" if above is None else (f"; its best checkpoint is {'above' if above > 0 else 'below'} {whose} "
                                           f"on validation by {abs(above):.3f}")
        passes = bool(above and above > 0) if base is None else False
        curves.append((f"- {_label(name).capitalize()}: its validation ELBO (sequence-averaged, as training tracks "
                       f"it) peaked at epoch {e_peak} and {fell}{versus}.", falls, passes, base is not None))
    return curves


def _fit(r, key):
    """The chosen run's training ELBO at its best epoch against its validation ELBO: (sentence, gap),
    (None, None) where that epoch is within the KL annealing."""
    train = best_epoch_training(r)
    if train is None:
        return None, None
    gap = train - r["valid"][key]
    return (f"- The chosen run's training ELBO at its best epoch is {train:.3f}, its validation ELBO "
            f"{r['valid'][key]:.3f}: a gap of {gap:.3f} (the fit table below)."), gap


def _test_against_validation(results, d, variant, chosen):
    """Test minus validation ELBO over the SRNN runs of a dataset and variant that record both,
    as a sentence. Both frame-weighted: srnn2016's validation pieces are chunks of
    100 steps each, so its ELBO weighs every step alike, and only the frame-weighted test ELBO
    is like for like (the sequence-averaged one weighs short pieces as much as long ones)."""
    def shift(r):
        return r["test"]["elbo"]["frame_weighted"] - r["valid"]["frame_weighted"]

    shifts = [shift(r) for r in results.values()
              if r["dataset"] == d and r["variant"] == variant and Config.from_dict(r["model"]).model == "srnn"
              and "valid" in r and not r["partial"]]
    spread = (f"over its {len(shifts)} SRNN runs from {min(shifts):+.3f} to {max(shifts):+.3f}; the chosen run's "
              if len(shifts) > 1 else "the chosen run's, its only SRNN run with both, ")
    return f"- Test minus validation ELBO (both frame-weighted): {spread}{shift(results[chosen]):+.3f}."


def _poster(results, d, key):
    """Where the seed poster's best over z and the paper's number lie against our sweep's test
    ELBOs: (sentence, the poster's within their range, the paper's above all of them);
    (None, False, False) before two z have run."""
    sweep = [(z, results[sweep_name(d, z)]["test"]["elbo"][key]) for z in SWEEP_Z if sweep_name(d, z) in results]
    if len(sweep) < 2:
        return None, False, False
    lo, hi = min(v for _, v in sweep), max(v for _, v in sweep)
    poster, paper = POSTER_BEST[d], PAPER_SRNN[d]
    where = "lies within" if lo - 0.005 <= poster <= hi + 0.005 else "is above" if poster > hi else "is below"
    paper_where = "above all of them" if paper > hi else "within their range" if paper >= lo else "below all of them"
    return (f"- The seed poster's best over z, {poster:.2f}, {where} our sweep's test ELBOs ({lo:.2f} to {hi:.2f} "
            f"over z = {', '.join(str(z) for z, _ in sweep)}); the paper's {paper:.2f} is {paper_where}."), \
        where == "lies within", paper > hi


def _tightest(r):
    """The test key of a result's tightest bound: its IW bound of the largest K."""
    return max((k for k in r["test"] if k.startswith("iw_K")), key=lambda k: int(k[4:]))


def with_seeds(results, name):
    """The result of run `name` and those of its -seed<N> runs (the same run with another seed)."""
    return [r for n, r in results.items() if n == name or re.fullmatch(re.escape(name) + r"-seed\d+", n)]


def _over_seeds(results, name, key="sequence_averaged", sign=1.0):
    """The test ELBO of run `name` and of its -seed<N> runs: mean ± standard deviation over seeds
    (three decimals, as the ten-path column: seeds can agree to a few thousandths)."""
    values = [sign * r["test"]["elbo"][key] for r in with_seeds(results, name)]
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f} ({len(values)})" if len(values) > 1 else "–"


def _paths(r, key="sequence_averaged"):
    """The ELBO averaged over noise paths, ± the standard error of that average over the paths."""
    m = r and r["test"].get("elbo_paths10")
    return f"{m[key]:.3f} ± {m[key + '_path_se']:.3f}" if m else "–"


def best_z_on_validation(results, dataset):
    """The z of the dataset's sweep whose best checkpoint has the highest validation ELBO; None
    until every z has a complete result that records it (test never decides)."""
    runs = {z: results.get(sweep_name(dataset, z)) for z in SWEEP_Z}
    if not all(r and "valid" in r and not r["partial"] for r in runs.values()):
        return None
    return max(SWEEP_Z, key=lambda z: runs[z]["valid"]["sequence_averaged"])


def check_best_z(results):
    """srnn.reproduce.SRNN_BEST_Z must be the choice the result files make."""
    for d in DATASETS:
        best, declared = best_z_on_validation(results, d), SRNN_BEST_Z.get(d)
        if best and declared and best != declared:
            sys.exit(f"srnn.reproduce.SRNN_BEST_Z gives {d} z = {declared}, but its sweep's validation ELBOs "
                     f"choose z = {best}")


def against_the_paper(results, dataset, variant="srnn2016"):
    """One sentence: does the paper configuration's run match the published number? On srnn2016 its
    test ELBO against the SRNN paper's; on boulanger2012 its −IW K=100 NLL against DMM-Aug's
    importance-sampled one. Both scored the same test pieces, so what makes ours uncertain is the
    training's seed, not the choice of pieces: the verdict is the mean over seeds ± its standard
    error (sd / sqrt(n)), and is left open with one seed."""
    name = f"{dataset}-{variant}"
    published, label, sign, metric, digits = _published(dataset, variant)
    values = [sign * r["test"][metric[0]][metric[1]] for r in with_seeds(results, name) if metric[0] in r["test"]]
    if not values:
        return None
    mean = float(np.mean(values))
    better = sign * (mean - published)  # > 0: ours is better
    by = (f"ours {'better' if better >= 0 else 'worse'} by {abs(better):.3f}" if round(better, 3)
          else "the same to three decimals")
    if len(values) == 1:
        return f"- {NAMES[dataset]}: ours {mean:.3f} against {label} ({by}); one seed: not judged over seeds."
    _, se = _mean_and_se(values)
    verdict = ("worse than", "not told apart from", "better than")[_side(better, se, len(values)) + 1]
    rounding = _rounding(better, se, len(values), published, sign, digits)
    return (f"- {NAMES[dataset]}: ours {mean:.3f} ± {se:.3f} over {len(values)} seeds (mean ± its standard error), "
            f"{verdict} {label} ({by}{rounding}).")


def _header(title, columns):
    """A table's title and header lines."""
    return [f"\n### {title}\n", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]


def tables(results):
    out = _header("The paper's setting: srnn2016 data, test ELBO in nats per step, sequence-averaged "
                  "(mean over pieces of L_i / T_i; higher is better)",
                  ["dataset", "ours: ELBO", "ours: ELBO over seeds (mean ± sd, n)", "ours: ELBO, 10 paths (± path noise)",
                   "ours: IW K=100", "ours: IW K=1000", "ours: ELBO, frame-weighted", "paper (SRNN)",
                   "seed poster (best z)", "run"])
    for d in DATASETS:
        r = results.get(f"{d}-srnn2016")
        elbo = _value(r["test"]["elbo"]) if r else "–"
        fw = _value(r["test"]["elbo"], "frame_weighted") if r else "–"
        out.append(f"| {NAMES[d]} | {elbo} | {_over_seeds(results, f'{d}-srnn2016')} | {_paths(r)} | "
                   f"{_iw(r, 100, 'sequence_averaged')} | {_iw(r, 1000, 'sequence_averaged')} | {fw} | "
                   f"{PAPER_SRNN[d]:.2f} | {POSTER_BEST[d]:.2f} | {_status(r)} |")
    out += [""] + [line for d in DATASETS if (line := against_the_paper(results, d))]
    out += _header("The standard splits: boulanger2012 data, negative log-likelihood bounds in nats per frame, "
                   "frame-weighted (−ΣL_i / ΣT_i; lower is better)",
                   ["dataset", "ours: −ELBO", "ours: −IW K=100", "DMM-Aug, importance-sampled", "DMM-Aug, −ELBO",
                    "pyro DMM, −ELBO", "run"])
    for d in DATASETS:
        r = results.get(f"{d}-boulanger2012")
        elbo = _value(r["test"]["elbo"], "frame_weighted", -1.0) if r else "–"
        out.append(f"| {NAMES[d]} | {elbo} | {_iw(r, 100, 'frame_weighted', -1.0)} | {DMM_AUG_IS[d]:.3f} | "
                   f"{DMM_AUG_ELBO[d]:.3f} | {PYRO_DMM_ELBO.get(d, '–')} | {_status(r)} |")
    out += [""] + [line for d in DATASETS if (line := against_the_paper(results, d, "boulanger2012"))]
    out += _header("The seed poster's sweep over z (srnn2016, test ELBO, sequence-averaged; d = 300)",
                   ["dataset", *(f"z = {z}" for z in SWEEP_Z), "best on validation", "poster's best"])
    for d in DATASETS:
        cells = []
        for z in SWEEP_Z:
            r = results.get(sweep_name(d, z))
            cells.append(_value(r["test"]["elbo"]) + (" (partial)" if r["partial"] else "") if r else "–")
        best = best_z_on_validation(results, d)
        chosen = "–"
        if best:
            spread = _over_seeds(results, sweep_name(d, best))
            chosen = (f"z = {best} (valid {results[sweep_name(d, best)]['valid']['sequence_averaged']:.2f})"
                      + (f"; test over seeds {spread}" if spread != "–" else ""))
        out.append(f"| {NAMES[d]} | " + " | ".join(cells) + f" | {chosen} | {POSTER_BEST[d]:.2f} |")
    out += tuned_table(results)
    out += why_section(results)
    out += _header("How much of z is used, over the sweep (srnn2016 test pieces): active units of z_dim "
                   "(Burda et al.'s Cov_x E_q[z_u] > 0.01), informative units (KL > 0.01 nats per step), "
                   "the KL per step (nats) and the part of it the uninformative units pay",
                   ["dataset", *(f"z = {z}" for z in SWEEP_Z)])
    for d in DATASETS:
        cells = []
        for z in SWEEP_Z:
            r = results.get(sweep_name(d, z))
            latent = r and r["test"].get("latent")
            if latent:
                informative, rest = informative_units(latent["kl_per_dim"])
                cells.append(f"{latent['active_units']}/{z} active, {informative} informative, "
                             f"KL {latent['kl_per_step']:.2f} ({rest:.2f} uninformative)")
            else:
                cells.append("–")
        out.append(f"| {NAMES[d]} | " + " | ".join(cells) + " |")
    out.append("\nBurda et al.'s criterion assumes a fixed prior: with the SRNN's prior, which moves with d_t, "
               "a unit whose posterior is its prior still counts as active, so the KL count is the one "
               "that says how many units carry information (srnn/analysis.py).")
    out.append(f"\nEach unit's activity and KL, sorted, for every z of the sweep: results/{LATENT_PLOT}.")
    out += fit_table(results)
    out += _header("Ablations on JSB (srnn2016, test ELBO, sequence-averaged)", ["model", "ELBO", "IW K=100", "run"])
    for name, label in (("jsb-srnn2016", "smoothing + Resq (the paper's)"), ("jsb-srnn2016-filtering", "filtering + Resq"),
                        ("jsb-srnn2016-no-resq", "smoothing, no Resq")):
        r = results.get(name)
        out.append(f"| {label} | {_value(r['test']['elbo']) if r else '–'} | {_iw(r, 100, 'sequence_averaged')} | "
                   f"{_status(r)} |")
    out += model_comparison(results)
    out.append("\n± are standard errors over test pieces, or over seeds where a number says so. \"ref = torch ✓\": "
               "the best checkpoint's test ELBO computed by both implementations in float64 agrees to 1e-8.")
    pieces = sorted({r["test"]["num_sequences"] for r in results.values() if "test" in r})
    out.append(f"\nEvery verdict sets a difference against its 95% interval: ± t standard errors, t Student's 0.975 "
               f"quantile for n − 1 degrees of freedom, n the seeds or test pieces the standard error is over (for a "
               f"difference of two means the smaller n, Welch's conservative choice): t = {_t(2):.2f} for two seeds, "
               f"{_t(3):.2f} for three, {_t(pieces[-1]):.2f} to {_t(pieces[0]):.2f} for a corpus's {pieces[0]} to "
               f"{pieces[-1]} test pieces. Outside the interval the verdict is yes or no (better or worse); inside, "
               f"{WITHIN} (not told apart). A published number is taken as printed; where its rounding, half a unit "
               f"of its last digit, could bring a verdict inside the interval, the verdict says so.")
    out.append(not_run_table(results))
    return "\n".join(out) + "\n"


def _recipe(tc):
    """"tuned" when a TrainConfig follows the tuned recipe on its data (reproduce.tuned_training), else
    "paper"; either followed by its weight decay when it has one (a recipe of its own)."""
    tuned = tuned_training(tc.dataset, tc.variant)
    recipe = "tuned" if all(getattr(tc, k) == tuned[k] for k in TUNED) else "paper"
    return recipe + (f", weight decay {tc.weight_decay:g}" if tc.weight_decay else "")


def best_epoch_training(r):
    """The training ELBO of a result's best epoch, from its learning curve; None where that epoch is
    within the KL annealing (its training objective is not the ELBO)."""
    curve = r["curve"]
    best = curve["epoch"].index(r["best_epoch"])
    return curve["train_elbo"][best] if curve["kl_weight"][best] == 1.0 else None


def fit_table(results):
    """Under- or over-fitting: each SRNN run whose result file holds its learning curve, with the
    training objective of its best checkpoint's epoch (KL weight 1: the ELBO) beside that
    checkpoint's validation ELBO, in the variant's convention; then, per dataset, variant, recipe
    and seed, how each moves from the smallest z to the largest (runs of another schedule are not a
    sweep of one). The training number is frame-weighted: on the srnn2016 files every sequence has
    the same length, so it and the sequence-averaged validation one are the same measure."""
    rows, annealing = [], []  # (dataset, variant, recipe, seed, z, name, train, valid); runs left out
    for name, r in results.items():
        config, tc = Config.from_dict(r["model"]), TrainConfig.from_dict(r["train"])
        if config.model != "srnn" or not r.get("curve"):
            continue
        train = best_epoch_training(r)
        if train is None:
            annealing.append(name)
            continue
        rows.append((tc.dataset, tc.variant, _recipe(tc), tc.seed, config.z_dim, name, train,
                     r["valid"][_convention(tc.variant)]))
    if not rows:
        return []
    out = _header("How well each run fits (SRNN): the training ELBO of the best checkpoint's epoch against that "
                  "checkpoint's validation ELBO; srnn2016 in nats per step, boulanger2012 per frame, frame-weighted",
                  ["run", "recipe", "z", "seed", "training ELBO, best epoch", "validation ELBO, best checkpoint",
                   "training − validation"])
    rows.sort(key=lambda row: (row[1] != "srnn2016", DATASETS.index(row[0]), row[2], row[3], row[4]))
    for d, variant, recipe, seed, z, name, train, valid in rows:
        out.append(f"| {name} | {recipe} | {z} | {seed} | {train:.3f} | {valid:.3f} | {train - valid:.3f} |")
    if annealing:
        out.append(f"\nLeft out, their best epoch within the KL annealing (a training objective that is not the "
                   f"ELBO): {', '.join(sorted(annealing))}.")
    out.append("")
    for (d, variant, recipe, seed), group in itertools.groupby(rows, key=lambda row: row[:4]):
        group = list(group)
        if len(group) > 1:
            (*_, z_lo, _, train_lo, valid_lo), (*_, z_hi, _, train_hi, valid_hi) = group[0], group[-1]
            label = "the tuned recipe" if recipe == "tuned" else "the paper's recipe"
            out.append(f"- {NAMES[d]} ({variant}), {label}, seed {seed}: "
                       f"from z = {z_lo} to z = {z_hi} the training ELBO moves by "
                       f"{train_hi - train_lo:+.3f} and the validation ELBO by {valid_hi - valid_lo:+.3f} nats "
                       f"(the gap from {train_lo - valid_lo:.3f} to {train_hi - valid_hi:.3f}).")
    out.append("\nA training ELBO that falls with z by as much as the validation one is under-fitting (the "
               "optimisation, not the data, limits the larger model); one that falls while the validation "
               "ELBO holds is a smaller gap: the larger z over-fits less. The gap itself, taken at the checkpoint "
               "kept, is what the model fits of its training pieces and not of pieces it has not seen.")
    return out


def plot_latent_usage(results, path):
    """For each dataset, every z of the sweep: each unit's activity (the variance of its posterior
    mean; active above Burda et al.'s threshold) and its KL per step, units sorted from most to least
    used. Few units carry the KL at large z where the model under-fits (issue 14, item 5)."""
    fig = Figure(figsize=(4 * len(DATASETS), 7), layout="constrained")
    axes = fig.subplots(2, len(DATASETS), squeeze=False)
    for column, d in enumerate(DATASETS):
        activity_ax, kl_ax = axes[:, column]
        for z in SWEEP_Z:
            r = results.get(sweep_name(d, z))
            latent = r and r["test"].get("latent")
            if not latent:
                continue
            label = f"z = {z}: {latent['active_units']} active, {informative_units(latent['kl_per_dim'])[0]} informative"
            activity_ax.plot(np.arange(1, z + 1), sorted(latent["activity"], reverse=True), ".-", label=label)
            kl_ax.plot(np.arange(1, z + 1), sorted(latent["kl_per_dim"], reverse=True), ".-", label=label)
        activity_ax.axhline(ACTIVE, color="gray", linestyle=":", label=f"active above {ACTIVE}")
        kl_ax.axhline(INFORMATIVE, color="gray", linestyle=":", label=f"informative above {INFORMATIVE}")
        activity_ax.set_title(f"{NAMES[d]} (srnn2016 test pieces)")
        activity_ax.set_ylabel("Cov_x E_q[z_u]")
        kl_ax.set_ylabel("KL per step (nats)")
        for ax in (activity_ax, kl_ax):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("unit, sorted")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize="small")
    fig.savefig(path, dpi=100, bbox_inches="tight")


def parameter_count(name):
    config = RUNS[name][0]
    return sum(math.prod(shape) for shape in param_shapes(config).values())


def model_comparison(results):
    """SRNN, VRNN and RNN with the same data, schedule and evaluation: each model's ELBO, its IW
    bound (K = 100) and the gap between them (how loose its ELBO is); the RNN's two are its exact
    log-likelihood. Then the published anchors of each variant's convention."""
    out = []
    for variant, key, sign, title, anchors in (
            ("srnn2016", "sequence_averaged", 1.0, "srnn2016 data, test bounds in nats per step, sequence-averaged "
             "(higher is better)", [("SRNN paper", PAPER_SRNN)]),
            ("boulanger2012", "frame_weighted", -1.0, "boulanger2012 data, test NLL bounds in nats per frame, "
             "frame-weighted (lower is better)", [("RNN (B-L 2012)", BOULANGER_RNN),
                                                   ("RNN-NADE (B-L 2012)", BOULANGER_RNN_NADE)])):
        columns, minus = ["dataset"], "−" if sign < 0 else ""
        for prefix, label in MODELS:
            millions = f"{parameter_count(f'{prefix}jsb-{variant}') / 1e6:.2f} M parameters"
            columns += ([f"RNN ({millions}): {minus}log-lik. (exact)"] if label == "RNN" else
                        [f"{label} ({millions}): {minus}ELBO", f"{label}: {minus}IW K=100", f"{label}: IW − ELBO"])
        out += _header(f"Models compared: {title}", columns + [label for label, _ in anchors])
        for d, suffix in comparison_rows(variant):
            cells = []
            for prefix, label in MODELS:
                r = results.get(f"{prefix}{d}-{variant}{suffix}")
                if label == "RNN":
                    cells.append("(no z)" if suffix else _value(r["test"]["elbo"], key, sign) if r else "–")
                    continue
                iw = r and r["test"].get("iw_K100")
                gap = f"{iw[key] - r['test']['elbo'][key]:.2f}" if iw else "–"
                cells += [_value(r["test"]["elbo"], key, sign) if r else "–", _iw(r, 100, key, sign), gap]
            anchor_cells = ["–" if suffix else f"{table[d]:.2f}" for _, table in anchors]
            out.append(f"| {_row_label(d, variant, suffix)} | " + " | ".join(cells + anchor_cells) + " |")
        out += _verdicts(results, variant, key, sign)
    return out


def comparison_rows(variant):
    """(dataset, run-name suffix) of each row of the model comparison: every dataset, and on
    srnn2016 the SRNN and the VRNN also at the SRNN's best z (srnn.reproduce.SRNN_BEST_Z)."""
    for d in DATASETS:
        yield d, ""
        z = SRNN_BEST_Z.get(d, 100) if variant == "srnn2016" else 100
        if z != 100:
            yield d, f"-z{z}"


def _row_label(dataset, variant, suffix):
    if not suffix:
        return NAMES[dataset]
    counts = ", ".join(f"{label} {parameter_count(f'{prefix}{dataset}-{variant}{suffix}') / 1e6:.2f} M"
                       for prefix, label in MODELS[:2])
    return f"{NAMES[dataset]}, {suffix[1:].replace('z', 'z = ')}: the SRNN's best on validation ({counts} parameters)"


def _verdicts(results, variant, key, sign):
    """One sentence per dataset and baseline that has run: does the SRNN beat it, and by how much.
    Paired over test pieces where both result files hold each piece's ten-path ELBO (the standard
    error of the mean difference per piece, which the pieces' own spread does not inflate);
    otherwise on the ELBO and the IW bound (K = 100; the RNN's both are its log-likelihood) with the
    conservative unpaired standard error sqrt(se₁² + se₂²)."""
    lines = []
    favours = "a positive difference favours the SRNN" if sign > 0 else "a negative one favours the SRNN"
    for d, suffix in comparison_rows(variant):
        srnn = results.get(f"{d}-{variant}{suffix}")
        where = NAMES[d] + (f", {suffix[1:].replace('z', 'z = ')}" if suffix else "")
        for prefix, label in MODELS[1:]:
            other = results.get(f"{prefix}{d}-{variant}{suffix}")
            if not (srnn and other):
                continue
            comparisons = []
            paths = [r["test"].get("elbo_paths10") for r in (srnn, other)]
            if all(m and "per_sequence" in m for m in paths) and paths[0]["lengths"] == paths[1]["lengths"]:
                paired = summarize(np.subtract(paths[0]["per_sequence"], paths[1]["per_sequence"]), paths[0]["lengths"])
                comparisons.append(("ELBO (10 paths), paired over pieces", paired[key], paired[key + "_se"],
                                    len(paths[0]["lengths"])))
            for bound, srnn_m, other_m in (
                    ("ELBO", srnn["test"]["elbo"], other["test"]["elbo"]),
                    ("IW K=100", srnn["test"].get("iw_K100"),
                     other["test"]["elbo"] if label == "RNN" else other["test"].get("iw_K100"))):
                if srnn_m and other_m:
                    diff = srnn_m[key] - other_m[key]
                    comparisons.append((bound + ", unpaired", diff,
                                        (srnn_m[key + "_se"] ** 2 + other_m[key + "_se"] ** 2) ** 0.5,
                                        min(srnn["test"]["num_sequences"], other["test"]["num_sequences"])))
            parts = [f"{bound} {sign * diff:+.3f} ± {se:.3f} ("
                     + (f"the {label} is better", WITHIN, "the SRNN is better")[_side(diff, se, n) + 1]
                     + ")" for bound, diff, se, n in comparisons]
            lines.append(f"\n- {where}: SRNN minus {label} ({favours}): " + "; ".join(parts) + ".")
            lines.append("  " + _over_seeds_verdict(with_seeds(results, f"{d}-{variant}{suffix}"),
                                                    with_seeds(results, f"{prefix}{d}-{variant}{suffix}"), key, sign))
            gaps = [r["test"]["iw_K100"][key] - r["test"]["elbo"][key] for r in (srnn, other) if "iw_K100" in r["test"]]
            if label == "VRNN" and len(gaps) == 2:
                looser = "the VRNN's" if gaps[1] > gaps[0] else "the SRNN's"
                lines.append(f"  Their ELBO-to-IW gaps are {gaps[0]:.3f} (SRNN) and {gaps[1]:.3f} (VRNN) nats: "
                             f"{looser} ELBO is the looser by {abs(gaps[1] - gaps[0]):.3f}, so comparing ELBOs "
                             f"understates that model by as much; the IW bounds, tighter for both, compare them better.")
    return lines


def _over_seeds_verdict(srnns, others, key, sign):
    """Whether the ELBO difference keeps its sign for every pair of seeds of the two models."""
    if len(srnns) == len(others) == 1:
        return "One seed of each: not judged over seeds."
    diffs = [sign * (a["test"]["elbo"][key] - b["test"]["elbo"][key]) for a in srnns for b in others]
    seeds = f"{len(srnns)} seed{'s' if len(srnns) > 1 else ''} of the SRNN, {len(others)} of the other"
    listed = ", ".join(f"{v:+.3f}" for v in diffs)
    if all(v > 0 for v in diffs) or all(v < 0 for v in diffs):
        return f"Over {seeds}, the ELBO differences are {listed}: the same sign for every pair of seeds."
    return f"Over {seeds}, the ELBO differences are {listed}: the sign changes with the seed, the verdict does not hold over seeds."


def _epoch_key(dataset, variant, train_layout):
    # srnn2016's train files are streams already: both layouts are the same epoch
    return dataset, variant, "streams" if variant == "srnn2016" else train_layout


def epoch_seconds():
    """(model, dataset, variant, train layout) -> measured seconds of one paper-size float32
    training epoch on the CPU, from benchmarks/results/epoch_<dataset>_cpu*.json (bench_epoch.py):
    the ref trainer's, or torch_impl's for the VRNN (which has no numba kernel)."""
    seconds = {}
    for path in sorted((ROOT / "benchmarks" / "results").glob("epoch_*_cpu*.json")):
        for row in json.loads(path.read_text())["results"]:
            model = row.get("model", "srnn")
            impl = "torch" if model == "vrnn" else "ref"
            if row["dtype"] == "float32" and impl in row:
                key = (model, *_epoch_key(row["dataset"], row["variant"], row.get("train_layout", "as_stored")))
                seconds[key] = row[impl]["seconds"]
    return seconds


def _run_key(config, tc):
    """What sets a run's epoch time: (model, dataset, variant, train layout), as epoch_seconds() keys it."""
    return config.model, *_epoch_key(tc.dataset, tc.variant, tc.train_layout)


def made_runs(results):
    """(model, dataset, variant, train layout) -> [(z_dim, name, result)] of the complete result
    files: what a run took on this CPU as the queue makes them (one thread, beside another run)."""
    made = {}
    for name, r in results.items():
        if not r.get("partial"):
            config, tc = Config.from_dict(r["model"]), TrainConfig.from_dict(r["train"])
            made.setdefault(_run_key(config, tc), []).append((config.z_dim, name, r))
    return made


def _nearest_in_z(runs, z_dim):
    """The (z_dim, name, result) of `runs` nearest z_dim on a log scale (ties: the first name)."""
    return min(runs, key=lambda m: (abs(math.log(m[0] / z_dim)), m[1]))


def _run_hours(r, tc, ks):
    """Hours a run of tc.epochs with the largest K of ks takes, as the made run r took (its
    evaluation scaled to that K, which dominates it)."""
    K_made = max([int(k[4:]) for k in r["test"] if k.startswith("iw_K")] or [1])
    return (tc.epochs * r["seconds_per_epoch"] + r["eval_seconds"] * max(ks) / K_made) / 3600


def _time_over_srnn(made, model):
    """{(dataset, variant, layout): a `model` run's seconds per epoch over the SRNN's} where both
    were made on the same data, each of its runs paired with the SRNN run nearest in z."""
    ratios = {}
    for key, runs in made.items():
        srnns = made.get(("srnn", *key[1:]))
        if key[0] == model and srnns:
            ratios[key[1:]] = float(np.mean([r["seconds_per_epoch"] / _nearest_in_z(srnns, z)[2]["seconds_per_epoch"]
                                             for z, _, r in runs]))
    return ratios


def _hours(config, tc, ks, made, benchmark):
    """(s/epoch, hours of training and evaluation, where the numbers come from) of a run not made:
    as the made run of the same model and data nearest in z took; else, for a baseline, as the
    SRNN's run on that data took, times the baseline's time over the SRNN's where both were made;
    else the benchmark's epoch; None when there is none of these."""
    like = made.get(_run_key(config, tc))
    if like:
        _, name, r = _nearest_in_z(like, config.z_dim)
        return r["seconds_per_epoch"], _run_hours(r, tc, ks), f"as {name} took"
    srnns = made.get(("srnn", *_run_key(config, tc)[1:])) if config.model != "srnn" else None
    ratios = _time_over_srnn(made, config.model) if srnns else {}
    if ratios:
        _, name, r = _nearest_in_z(srnns, config.z_dim)
        ratio = float(np.mean(list(ratios.values())))
        return (ratio * r["seconds_per_epoch"], ratio * _run_hours(r, tc, ks),
                f"as {name} took × {ratio:.1f}, the {config.model.upper()}'s epoch over the SRNN's on the "
                f"{len(ratios)} data set{'s' * (len(ratios) > 1)} where both ran")
    if benchmark:
        note = "" if config.z_dim == 100 or config.model == "rnn" else " at z = 100"
        return benchmark, tc.epochs * benchmark / 3600, (f"benchmark{note}, two threads alone: a run of the "
                                                         f"queue took 1.5-2.5x its time; evaluation not counted")
    return None


def not_run_table(results):
    """The runs not made yet: their command, and the time they need on this CPU."""
    seconds, made = epoch_seconds(), made_runs(results)
    total = 0.0
    header = _header("Not run yet (each one command; `results/run_all.sh` runs them all)",
                     ["run", "command", "s/epoch, this CPU (float32; ref, torch for the VRNN)", "epochs",
                      "hours (training and evaluation)", "estimated from"])
    lines = list(header)
    for name, (config, tc, ks) in RUNS.items():
        if name in results:
            missing = missing_bounds(results[name], ks)
            if lacks_validation(name, results[name]):  # trained again: a choice on validation waits for it
                r = results[name]
                hours = _run_hours(r, tc, ks)
                total += hours
                lines.append(f"| {name}: validation ELBO | `srnn reproduce {name}` (trains it again: its file "
                             f"predates the validation ELBO that chooses {'z and ' if 'srnn2016' in name else ''}the recipe) | "
                             f"{r['seconds_per_epoch']:.0f} | "
                             f"{tc.epochs} | {hours:.1f} | as it took |")
            elif missing:  # evaluation only; its time scales with K
                hours = results[name]["eval_seconds"] * max(missing) / 100 / 3600
                lines.append(f"| {name}: IW K={', '.join(map(str, missing))} | `srnn reproduce {name}` "
                             f"(evaluates every K of the run) | trained | – | ~{hours:.1f} (evaluation) | "
                             f"its evaluation at K=100 |")
            continue
        estimate = _hours(config, tc, ks, made, seconds.get(_run_key(config, tc)))
        total += estimate[1] if estimate else 0.0
        command = f"srnn reproduce {name}" + (" --impl torch" if config.model == "vrnn" else "")
        epochs = f"≤ {tc.epochs} (stops {tc.patience} after its best)" if tc.patience else tc.epochs
        lines.append(f"| {name} | `{command}` | " + (f"{estimate[0]:.0f} | {epochs} | {estimate[1]:.1f} | "
                                                     f"{estimate[2]} |" if estimate
                                                     else f"not measured | {epochs} | – | – |"))
    seeds = ", ".join(map(str, EXTRA_SEEDS))
    for d in DATASETS:  # the best-z run's seeds and the VRNN at its z: runs once validation has chosen z
        if d in SRNN_BEST_Z:
            continue
        best = best_z_on_validation(results, d)
        lacking = [sweep_name(d, z) for z in SWEEP_Z if "valid" not in results.get(sweep_name(d, z), {})]
        todo = (f"SRNN_BEST_Z[\"{d}\"] = {best} in srnn/reproduce.py, which lists them" if best else
                "waits for the validation ELBO of every SRNN run of the sweep, listed above: "
                + ", ".join(lacking))
        lines.append(f"| {d}-srnn2016 at its best z: seeds {seeds}, and vrnn-{d}-srnn2016 "
                     f"at that z | {todo} | – | 50 | – | – |")
    for d, variant in itertools.product(DATASETS, ("srnn2016", "boulanger2012")):  # the chosen recipe's seeds
        if f"{d}-{variant}" in RECIPE_CHOICE:
            continue
        name, waiting = recipe_choice(results, d, variant)
        todo = (f"waits for the validation ELBO of every run the choice compares, listed above: {', '.join(waiting)}"
                if waiting else f"RECIPE_CHOICE[\"{d}-{variant}\"] = \"{name}\" in srnn/reproduce.py, which lists them")
        which = " if it is a tuned one (the paper's recipe has them at its best z)" if variant == "srnn2016" else ""
        lines.append(f"| {d}-{variant}: seeds {seeds} of the run its recipe choice names{which} | {todo} | – | – | – | – |")
    if lines == header:
        return header[0] + "\nNone: every run of srnn.reproduce.RUNS has its result file."
    lines.append(f"\nIn all, the runs estimated above: {total:.0f} hours of one CPU core, as the queue runs them "
                 f"(one thread each, two side by side); a run that stops early takes less.")
    return "\n".join(lines)


def main():
    results = load_results()
    check_best_z(results)
    check_recipe_choice(results)
    body = tables(results)
    plot_latent_usage(results, HERE / LATENT_PLOT)
    details = ["\n## Every result file\n",
               "Beside each `<run>.json`: `<run>_learning_curve.png` and pieces sampled from the best checkpoint, "
               "`<run>_samples/sample_*.png` (piano rolls) and `.mid`.\n",
               "| run | command | commit | epochs | s/epoch | hardware | implementation |",
               "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        impl = r["implementation"]
        details.append(f"| {name} | `{r['command']}` | {r['commit']} | {r['epochs']}/{r['planned_epochs']} | "
                       f"{r['seconds_per_epoch']:.1f} | {r['hardware']['cpus']} CPUs, {r['hardware']['platform']} | "
                       f"{impl['impl']} ({impl.get('device', impl.get('backend'))}, {impl['dtype']}) |")
    (HERE / "README.md").write_text("# Results\n\nGenerated by `python results/make_table.py` from the result files "
                                    "in this directory.\n\n" + body + "\n".join(details) + "\n")
    readme = (ROOT / "README.md").read_text()
    if START in readme and END in readme:
        head, rest = readme.split(START)
        readme = head + START + "\n" + body + END + rest.split(END)[1]
        (ROOT / "README.md").write_text(readme)
    print(f"wrote {HERE / 'README.md'} and the README's results section ({len(results)} result files)")


if __name__ == "__main__":
    main()
