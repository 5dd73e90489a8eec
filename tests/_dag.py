"""A tiny residual network with fixed seeded weights, shared by the DAG tests (IR, conversion, CLI)."""

from __future__ import annotations

import numpy as np

from spikebridge.ir import Add, AnnGraph, Concat, Conv2d, Dense, GlobalAvgPool2d, Input, ReLU


def make_tiny_resnet(seed: int = 0) -> AnnGraph:
    """(1, 6, 6) input; an identity block, a stride-2 block with a 1x1 projection shortcut, a channel concat.

    ``stem -> r0 -> [c1 -> r1 -> c2] + r0 -> a1 -> r2 -> [c3(s2) -> r3 -> c4] + sc(1x1, s2) -> a2 -> r4
    -> concat(r4, relu(side(r4))) -> gap -> fc``
    """
    r = np.random.default_rng(seed)

    def conv(name, o, i, k, stride=1, pad=0):
        return Conv2d(name=name, weight=r.normal(0, 0.6 / np.sqrt(i * k * k), size=(o, i, k, k)),
                      bias=r.normal(0.05, 0.05, size=o), stride=stride, padding=pad)

    layers = [
        Input(name="input", shape=(1, 6, 6)),
        conv("stem", 4, 1, 3, pad=1), ReLU(name="r0"),
        conv("c1", 4, 4, 3, pad=1), ReLU(name="r1"), conv("c2", 4, 4, 3, pad=1),
        Add(name="a1"), ReLU(name="r2"),
        conv("c3", 6, 4, 3, stride=2, pad=1), ReLU(name="r3"), conv("c4", 6, 6, 3, pad=1),
        conv("sc", 6, 4, 1, stride=2),
        Add(name="a2"), ReLU(name="r4"),
        conv("side", 2, 6, 1), ReLU(name="r5"),
        Concat(name="cat", axis=0), GlobalAvgPool2d(name="gap"),
        Dense(name="fc", weight=r.normal(0, 0.5, size=(3, 8)), bias=r.normal(0, 0.1, size=3)),
    ]
    edges = [
        ("input", "stem"), ("stem", "r0"), ("r0", "c1"), ("c1", "r1"), ("r1", "c2"), ("c2", "a1"), ("r0", "a1"),
        ("a1", "r2"), ("r2", "c3"), ("c3", "r3"), ("r3", "c4"), ("r2", "sc"), ("c4", "a2"), ("sc", "a2"),
        ("a2", "r4"), ("r4", "side"), ("side", "r5"), ("r4", "cat"), ("r5", "cat"), ("cat", "gap"), ("gap", "fc"),
    ]
    return AnnGraph(layers, edges, name="tiny_resnet", metadata={"task": "classification"})


def torch_resnet(seed: int = 0, in_channels: int = 1, n_classes: int = 10):
    """A small ResNet in torch: stem, an identity BasicBlock, a BasicBlock with a 1x1 conv + BN downsample
    (stride 2), a channel concat head, global average pooling and a Linear read-out.

    The blocks use ``out += identity`` and ``torch.add``; the head uses ``torch.cat`` — the three joins
    an fx trace of a ResNet-style module holds.
    """
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class BasicBlock(nn.Module):  # torchvision's BasicBlock, without the dependency
        def __init__(self, cin: int, cout: int, stride: int = 1, use_add: bool = False) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            self.use_add = use_add

        def forward(self, x):
            identity = x
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            if self.downsample is not None:
                identity = self.downsample(x)
            if self.use_add:
                out = torch.add(out, identity)
            else:
                out += identity
            return self.relu(out)

    class ResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
            self.layer1 = BasicBlock(8, 8)
            self.layer2 = BasicBlock(8, 16, stride=2, use_add=True)
            self.side = nn.Conv2d(16, 4, 1)
            self.pool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(20, n_classes)

        def forward(self, x):
            x = self.layer2(self.layer1(self.stem(x)))
            x = torch.cat([x, F.relu(self.side(x))], dim=1)
            return self.fc(torch.flatten(self.pool(x), 1))

    torch.manual_seed(seed)
    return ResNet()
