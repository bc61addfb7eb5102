"""The results the reports publish for the runs our configs reproduce (``eval.compare --published``).

Keyed by the config's ``name``. Values are fractions; ``split`` is what the report measured on.
Report 003's retrieval precision / recall are macro averages (its recall, 90.74%, differs from its
accuracy, 90.80%, which a weighted recall never does).
"""
from __future__ import annotations

PUBLISHED = {
    "baseline": {"source": "report 004, Fig. 56", "split": "test", "loss": 1.9821,
                 "heads": {"make": {"accuracy": 0.8730, "loss": 0.5410},
                           "model": {"accuracy": 0.6408, "loss": 1.4412}}},
    "optimal": {"source": "report 004, Fig. 56", "split": "test", "loss": 1.2533,
                "heads": {"make": {"accuracy": 0.9451, "loss": 0.3154},
                          "model": {"accuracy": 0.8828, "loss": 0.7742}}},
    "focal_loss": {"source": "report 004, Fig. 56", "split": "test", "loss": 0.3584,
                   "heads": {"make": {"accuracy": 0.9073, "loss": 0.0957},
                             "model": {"accuracy": 0.8039, "loss": 0.1853}}},
    "report000_efficientnetv2_b2": {"source": "report 000, test phase", "split": "test",
                                    "heads": {"model": {"accuracy": 0.8197}}},
    "report003_resnet50_finetune": {"source": "report 003, Table 1 (weighted averages)", "split": "test",
                                    "loss": 0.2930,
                                    "heads": {"model": {"accuracy": 0.9214, "weighted": {
                                        "precision": 0.9248, "recall": 0.9214, "f1": 0.9212}}}},
    "report003_custom_cnn": {"source": "report 003, section 2.3.4 (macro averages)", "split": "test",
                             "loss": 1.3460,
                             "heads": {"model": {"accuracy": 0.6554, "macro": {
                                 "precision": 0.6621, "recall": 0.6550, "f1": 0.6420}}}},
    "report003_resnet50_finetune kNN": {"source": "report 003, Table 4 (k = 13, Manhattan, L2-normalised)",
                                        "split": "test",
                                        "heads": {"model": {"accuracy": 0.9080, "macro": {
                                            "precision": 0.9111, "recall": 0.9074, "f1": 0.9071}}}},
}
