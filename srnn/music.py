"""Music out of a model: pieces sampled by an engine, as a PNG to look at and a MIDI file to listen to.

A piano roll is a (T, 88) array of 0/1, one row per time step; key k is MIDI pitch
21 + k, so the 88 keys are pitches 21 (A0) .. 108 (C8), as in every dataset here.
"""
from matplotlib.figure import Figure  # no pyplot: files only, any machine, the caller's backend untouched
import mido
import numpy as np

from ref import draw_sample_noise
from ref.errors import InputError

LOWEST_PITCH = 21
NUM_KEYS = 88
TICKS_PER_BEAT = 480
TEMPO = 500_000  # microseconds per beat (120 bpm); only the ratio to seconds_per_step matters


def piano_roll_png(roll, path, title=None):
    """Draw a (T, 88) piano roll, time left to right and pitch upwards, to a PNG file."""
    roll = _check_roll(roll)
    # about 25 steps per inch, within bounds so that long pieces stay a viewable image
    fig = Figure(figsize=(min(max(4.0, roll.shape[0] / 25), 40.0), 4))
    ax = fig.subplots()
    extent = (0, roll.shape[0], LOWEST_PITCH - 0.5, LOWEST_PITCH + NUM_KEYS - 0.5)
    ax.imshow(roll.T, origin="lower", aspect="auto", cmap="Greys", interpolation="nearest", extent=extent)
    ax.set_xlabel("time step")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title)
    fig.savefig(path, dpi=100, bbox_inches="tight")


def write_midi(roll, path, seconds_per_step=0.25, velocity=80):
    """Write a (T, 88) piano roll as a one-track MIDI file (pitch = 21 + key).

    A key that stays on over consecutive steps is one held note (a piano roll cannot
    tell a held note from a repeated one); every note ends when its key turns off.
    """
    roll = _check_roll(roll)
    if not seconds_per_step > 0:
        raise InputError(f"seconds_per_step must be positive, got {seconds_per_step!r}")
    ticks_per_step = max(1, mido.second2tick(seconds_per_step, TICKS_PER_BEAT, TEMPO))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=TEMPO, time=0)])
    # a zero row before and after turns every note's start and end into a change
    padded = np.vstack([np.zeros((1, NUM_KEYS)), roll, np.zeros((1, NUM_KEYS))])
    last_tick = 0
    for step in range(1, len(padded)):
        tick = (step - 1) * ticks_per_step
        change = padded[step] - padded[step - 1]
        for key in np.flatnonzero(change < 0):
            track.append(mido.Message("note_off", note=LOWEST_PITCH + int(key), velocity=0, time=tick - last_tick))
            last_tick = tick
        for key in np.flatnonzero(change > 0):
            track.append(mido.Message("note_on", note=LOWEST_PITCH + int(key), velocity=velocity, time=tick - last_tick))
            last_tick = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi = mido.MidiFile(ticks_per_beat=TICKS_PER_BEAT)
    midi.tracks.append(track)
    midi.save(path)


def _check_roll(roll):
    roll = np.asarray(roll)
    if roll.ndim != 2 or roll.shape[1] != NUM_KEYS:
        raise InputError(f"a piano roll must have shape (T, {NUM_KEYS}), got {roll.shape}")
    if not np.isin(roll, (0, 1)).all():
        raise InputError("a piano roll must hold only 0 and 1")
    return roll


def generate(engine, num, length, seed):
    """`num` piano rolls of `length` steps sampled from the model in `engine`; (num, length, x_dim)."""
    rng = np.random.default_rng(seed)
    return np.asarray(engine.sample(*draw_sample_noise(rng, engine.config, num, length)))
