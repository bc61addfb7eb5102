"""Multi-output classifiers (make / model / year / type heads) on EfficientNet B0–B7 and V2,
ResNet50, MobileNetV2 and a small custom CNN. Not built yet: issue 3."""
