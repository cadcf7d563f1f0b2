"""Binary neural networks: layers, VGG-small and ResNet-18, training, evaluation, checkpoints."""
