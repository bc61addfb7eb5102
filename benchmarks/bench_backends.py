"""TensorFlow vs JAX backend, side by side: step time of the same model, data and global batch.

Not a test: prints a table. Every measurement runs in its own process (a process has one Keras
backend): ``training.plan`` builds the run, ``model.fit`` trains it, and the median epoch time after
the first (compiling) epoch, divided by the steps, is the step time. Rows: the demo's CNN at 64 px and
MobileNetV2 at 224 px, on 1 and 2 CPU devices (TensorFlow: MirroredStrategy on 2 logical CPUs; JAX:
DataParallel over ``--xla_force_host_platform_device_count=2``), each backend with its default
``jit_compile`` (JAX: compiled; TensorFlow: graphs); and JAX without compiling, which is what a
``jit_compile: false`` default used to mean on JAX. A last part times one convolution forward and
forward + backward in TensorFlow and in XLA, the operation the difference comes from.

Usage: ``python -m benchmarks.bench_backends [--work bench_out/backends] [--steps 4] [--epochs 3]``
"""
from __future__ import annotations

from common.cli import command_parser, quiet_tensorflow

quiet_tensorflow()  # before TensorFlow is imported: no start-up banners

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import keras

from benchmarks import results
from benchmarks.bench_build import machine
from data_prep.prepare import ensure_shards
from training.config import config_from_dict
from training.distribute import split_cpu
from training.plan import compile_model, make_plan, new_model, training_data

BATCH = 32
MODELS = {"demo CNN, 64 px": ("custom_cnn", 64), "MobileNetV2, 224 px": ("mobilenet_v2", 224)}


def prepare(work: str) -> str:
    """Synthetic 640×480 photos as 320-px shards (enough for a 224-px input)."""
    return ensure_shards(os.path.join(work, "shards"), max_side=320, variant="devkit", makes=6, models_per_make=4,
                         images_per_model=12, bad_files=False, size=(640, 480))


def worker(arguments) -> dict:
    """One measurement, in this process (its Keras backend comes from the environment)."""
    if arguments.devices > 1 and keras.config.backend() == "tensorflow":
        split_cpu(arguments.devices)  # before TensorFlow initialises its devices
    backbone, size = MODELS[arguments.model]
    config = config_from_dict({
        "name": "bench", "data": {"shards": arguments.shards, "image_size": size, "global_batch_size": BATCH,
                                  "augment": "crop_flip"},
        "model": {"backbone": backbone, "weights": "none", "head": "linear"},
        "optimizer": {"name": "adam", "learning_rate": 0.001},
        "training": {"epochs": arguments.epochs, "steps_per_epoch": arguments.steps, "evaluate_split": None,
                     "strategy": "mirrored" if arguments.devices > 1 else "cpu", "verbose": 0,
                     "jit_compile": arguments.jit}})
    plan = make_plan(config)
    with plan.distribution.scope():
        model = compile_model(new_model(plan), plan)
    train, _ = training_data(plan)
    stamps = []
    timer = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: stamps.append(time.perf_counter()))
    model.fit(train, epochs=arguments.epochs, steps_per_epoch=plan.steps_per_epoch, callbacks=[timer], verbose=0)
    epochs = [later - earlier for earlier, later in zip(stamps, stamps[1:])]
    return {"backend": keras.config.backend(), "replicas": plan.distribution.replicas, "jit": plan.jit_compile,
            "step_ms": 1000 * statistics.median(epochs) / plan.steps_per_epoch}


def measure(backend: str, model: str, devices: int, shards: str, steps: int, epochs: int, jit=None) -> dict:
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", "JAX_PLATFORMS": "cpu"}
    if backend == "jax":
        environment["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    command = [sys.executable, "-m", "benchmarks.bench_backends", "--worker", "--model", model, "--devices",
               str(devices), "--shards", shards, "--steps", str(steps), "--epochs", str(epochs)]
    if jit is not None:
        command += ["--jit", "true" if jit else "false"]
    result = subprocess.run(command, env=environment, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def convolution_times() -> list:
    """A 3×3 convolution (batch 32, 32×32×64 → 128) and a 3×3 depthwise convolution (batch 32, 56×56×96, as
    in MobileNetV2), forward and forward + backward, in TensorFlow and in XLA."""
    code = """
import sys, time, numpy as np
backend, groups = sys.argv[1], int(sys.argv[2])
shape, kernel = ((32, 32, 32, 64), (3, 3, 64, 128)) if groups == 1 else ((32, 56, 56, 96), (3, 3, 1, 96))
x = np.random.rand(*shape).astype("float32"); w = np.random.rand(*kernel).astype("float32")
def timed(f, n=30):
    f(); start = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - start) / n * 1000
if backend == "jax":
    import jax, jax.numpy as jnp
    conv = lambda a, b: jax.lax.conv_general_dilated(a, b, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                                     feature_group_count=groups)
    fwd = jax.jit(conv); grad = jax.jit(jax.grad(lambda a, b: jnp.sum(conv(a, b) ** 2), argnums=(0, 1)))
    xs, ws = jnp.asarray(x), jnp.asarray(w)
    print(timed(lambda: fwd(xs, ws).block_until_ready()), timed(lambda: jax.block_until_ready(grad(xs, ws))))
else:
    import tensorflow as tf
    xs = tf.constant(x)
    ws = tf.constant(w if groups == 1 else np.transpose(w, (0, 1, 3, 2)))
    op = (lambda a, b: tf.nn.conv2d(a, b, 1, "SAME")) if groups == 1 else (
        lambda a, b: tf.nn.depthwise_conv2d(a, b, [1, 1, 1, 1], "SAME"))
    fwd = tf.function(lambda: op(xs, ws))
    @tf.function
    def grad():
        with tf.GradientTape() as tape:
            tape.watch([xs, ws]); loss = tf.reduce_sum(op(xs, ws) ** 2)
        return tape.gradient(loss, [xs, ws])
    print(timed(lambda: fwd().numpy()), timed(lambda: [g.numpy() for g in grad()]))
"""
    rows = []
    for groups, name in ((1, "3×3 convolution"), (96, "3×3 depthwise convolution")):
        for backend, label in (("tensorflow", "TensorFlow (oneDNN)"), ("jax", "XLA:CPU (JAX)")):
            result = subprocess.run([sys.executable, "-c", code, backend, str(groups)], capture_output=True, text=True,
                                    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "JAX_PLATFORMS": "cpu"})
            forward, both = (float(value) for value in result.stdout.split())
            rows.append({"layer": name, "backend": label, "forward_ms": forward, "forward_backward_ms": both})
    return rows


def main() -> None:
    parser = command_parser("python -m benchmarks.bench_backends", __doc__)
    parser.add_argument("--work", default=os.path.join("bench_out", "backends"))
    parser.add_argument("--steps", type=int, default=4, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs (the first compiles and is not counted)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=sorted(MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--shards", help=argparse.SUPPRESS)
    parser.add_argument("--jit", choices=["true", "false"], help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        arguments.jit = None if arguments.jit is None else arguments.jit == "true"
        print(json.dumps(worker(arguments)))
        return
    print(f"machine: {machine()}")
    shards = prepare(arguments.work)
    print(f"\nglobal batch {BATCH}, median step time over epochs 2–{arguments.epochs} of {arguments.steps} steps, "
          "each backend with its default jit_compile:\n")
    print("| model | CPU devices | TensorFlow ms/step | JAX ms/step | JAX / TensorFlow |\n|---|---:|---:|---:|---:|")
    steps = []
    for model in MODELS:
        for devices in (1, 2):
            tensorflow = measure("tensorflow", model, devices, shards, arguments.steps, arguments.epochs)
            jax = measure("jax", model, devices, shards, arguments.steps, arguments.epochs)
            steps.append({"model": model, "devices": devices, "tensorflow_ms": tensorflow["step_ms"],
                          "jax_ms": jax["step_ms"]})
            print(f"| {model} | {devices} | {tensorflow['step_ms']:.0f} | {jax['step_ms']:.0f} | "
                  f"{jax['step_ms'] / tensorflow['step_ms']:.2f}× |", flush=True)
    eager = measure("jax", "demo CNN, 64 px", 1, shards, arguments.steps, arguments.epochs, jit=False)
    print(f"\nJAX without jit_compile, demo CNN, 1 device: {eager['step_ms']:.0f} ms/step")
    layers = convolution_times()
    print("\none layer, batch 32 (ms): a 3×3 convolution 32×32×64 → 128; a 3×3 depthwise convolution 56×56×96\n"
          "| layer | backend | forward | forward + backward |\n|---|---|---:|---:|")
    for row in layers:
        print(f"| {row['layer']} | {row['backend']} | {row['forward_ms']:.1f} | {row['forward_backward_ms']:.1f} |")
    import jax as jax_module
    import keras

    results.save("bench_backends", {"batch": BATCH, "steps": arguments.steps, "epochs": arguments.epochs,
                                    "versions": {"jax": jax_module.__version__, "keras": keras.__version__},
                                    "step_times": steps, "jax_without_jit_ms": eager["step_ms"], "layers": layers},
                 machine())


if __name__ == "__main__":
    main()
