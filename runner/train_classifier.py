"""`--mode train_classifier`: the classifier of `config.classifier` (noise-conditional for guidance,
or a clean-data judge), written to workdir/<classifier.dir>/."""
from __future__ import annotations

from training.classifier import train_classifier


def run_train_classifier(config, workdir):
    net, report = train_classifier(config, workdir, progress=config.training.progress)
    acc = ", ".join(f"t={t}: {v['accuracy']:.3f}" for t, v in report["test_accuracy"].items())
    print(f"trained classifier ({'noise-conditional' if report['noise_conditional'] else 'clean data'}) for "
          f"{report['steps']} steps; test accuracy {acc}; checkpoint: {report['checkpoint']}")
    return report
