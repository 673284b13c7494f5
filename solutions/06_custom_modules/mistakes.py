"""Typical wrong answers to notebook 06, used by the grading tests.

Each entry is one simulated student: ``replace`` maps solution cells
(grade_id) to the wrong code submitted, ``loses`` lists the graded cells that
must score zero, ``says`` the words a cell's output must show for it. Every
other graded cell must keep its full points, so the mistakes combined in one
submission are independent of each other. ``ALTERNATIVES`` are correct answers
written differently: each must keep every point.
"""

_CONV_FORWARD = '''
    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.fc(torch.flatten(x, 1))
'''

_CONV_LAYERS = '''
class ThreeLayerConvNet(nn.Module):
    def __init__(self, in_channel, channel_1, channel_2, num_classes, image_size=32):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channel, channel_1, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1)
        self.fc = nn.Linear(channel_2 * image_size * image_size, num_classes)
'''

_PARAM_COUNT = '''
def convnet_param_count(in_channel, channel_1, channel_2, num_classes, image_size=32):
    conv1 = channel_1 * in_channel * 5 * 5 + channel_1
    conv2 = channel_2 * channel_1 * 3 * 3 + channel_2
    fc = num_classes * channel_2 * image_size * image_size + num_classes
    return conv1 + conv2 + fc
'''

_COUNT_PARAMETERS = '''

def count_parameters(model, trainable_only=True):
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
'''

_SAVE = '''
def save_weights(model, path):
    torch.save(model.state_dict(), path)
'''

_LOAD = '''

def load_weights(model, path):
    device = next(model.parameters()).device
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model
'''

MISTAKES = {
    "plain-list-fc-not-initialised-and-counts-tensors": {
        "replace": {
            "two-layer": '''
class TwoLayerNet(nn.Module):
    def __init__(self, input_size, hidden_size, num_classes):
        super().__init__()
        # a plain Python list: the layers are not registered, parameters() misses them
        self.layers = [nn.Linear(input_size, hidden_size), nn.Linear(hidden_size, num_classes)]

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.layers[1](F.relu(self.layers[0](x)))
''',
            "convnet": _CONV_LAYERS + '''        for layer in (self.conv1, self.conv2):  # the fc layer keeps PyTorch's default init
            nn.init.kaiming_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
''' + _CONV_FORWARD,
            "count": _PARAM_COUNT + '''

def count_parameters(model, trainable_only=True):
    # counts tensors, not numbers
    return len([p for p in model.parameters() if p.requires_grad or not trainable_only])
''',
        },
        "loses": ["test-two-layer", "test-convnet-init", "test-count"],
        "says": {"two-layer-check": "layers kept in a plain Python list/tuple/dict are not registered",
                 "init-check": "call nn.init.kaiming_normal_ on this layer's weight too",
                 "count-check": "you counted tensors, not numbers"},
    },
    "wrong-flatten-size-unpadded-count-and-parameters-only-saved": {
        "replace": {
            "convnet": '''
class ThreeLayerConvNet(nn.Module):
    def __init__(self, in_channel, channel_1, channel_2, num_classes, image_size=32):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channel, channel_1, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1)
        # wrong flatten size: as if the convolutions had no padding (32 -> 28 -> 26)
        self.fc = nn.Linear(channel_2 * (image_size - 6) ** 2, num_classes)
        for layer in (self.conv1, self.conv2, self.fc):
            nn.init.kaiming_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
''' + _CONV_FORWARD,
            "count": '''
def convnet_param_count(in_channel, channel_1, channel_2, num_classes, image_size=32):
    conv1 = channel_1 * in_channel * 5 * 5 + channel_1
    conv2 = channel_2 * channel_1 * 3 * 3 + channel_2
    side = image_size - 4 - 2  # as if the convolutions had no padding
    fc = num_classes * channel_2 * side * side + num_classes
    return conv1 + conv2 + fc
''' + _COUNT_PARAMETERS,
            "save-load": '''
def save_weights(model, path):
    # only the parameters: BatchNorm's running statistics (buffers) are lost
    torch.save({name: p.detach() for name, p in model.named_parameters()}, path)


def load_weights(model, path):
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state, strict=False)  # silences the missing keys
    return model
''',
        },
        "loses": ["test-convnet", "test-count", "test-save-load"],
        "says": {"convnet-check": "wrong flatten size before the fc layer",
                 "count-check": "the fc input uses the size a conv without padding would leave",
                 "save-check": "Buffers such as BatchNorm's running_mean/running_var"},
    },
    "view-default-init-and-pickled-model": {
        "replace": {
            "convnet": _CONV_LAYERS + '''        # no Kaiming initialisation: PyTorch's default init stays

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.fc(x.view(x.shape[0], -1))  # view fails on a non-contiguous (channels_last) tensor
''',
            "save-load": '''
def save_weights(model, path):
    torch.save(model, path)  # the whole pickled model, not its state_dict


def load_weights(model, path):
    loaded = torch.load(path, weights_only=False)
    model.load_state_dict(loaded.state_dict())
    return model
''',
        },
        "loses": ["test-convnet", "test-convnet-init", "test-save-load"],
        "says": {"convnet-check": "`view` on a non-contiguous tensor",
                 "init-check": "Every layer looks like PyTorch's default init",
                 "save-check": "It holds the pickled model object"},
    },
    "plain-tensor-uniform-init-frozen-counted-not-strict": {
        "replace": {
            "two-layer": '''
class TwoLayerNet(nn.Module):
    def __init__(self, input_size, hidden_size, num_classes):
        super().__init__()
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.fc2 = nn.Linear(hidden_size, num_classes)
        # a plain tensor, not an nn.Parameter: parameters() and the optimizer miss it
        self.scale = torch.ones(1, requires_grad=True)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x))) * self.scale
''',
            "convnet": _CONV_LAYERS + '''        for layer in (self.conv1, self.conv2, self.fc):
            nn.init.kaiming_uniform_(layer.weight)  # the right std, but a uniform distribution
            nn.init.zeros_(layer.bias)
''' + _CONV_FORWARD,
            "count": _PARAM_COUNT + '''

def count_parameters(model, trainable_only=True):
    return sum(p.numel() for p in model.parameters())  # trainable_only ignored: frozen layers counted
''',
            "save-load": _SAVE + '''

def load_weights(model, path):
    device = next(model.parameters()).device
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state, strict=False)  # a file with missing keys loads silently
    return model
''',
        },
        "loses": ["test-two-layer", "test-convnet-init", "test-count", "test-save-load"],
        "says": {"two-layer-check": "require grad but are plain tensors, not registered parameters",
                 "init-check": "look uniform, not normal",
                 "count-check": "frozen parameters (requires_grad=False) were counted",
                 "save-check": "load_state_dict(..., strict=False) hides missing and unexpected keys"},
    },
    "no-relu-no-second-conv-relu-biases-uncounted-load-result-returned": {
        "replace": {
            "two-layer": '''
class TwoLayerNet(nn.Module):
    def __init__(self, input_size, hidden_size, num_classes):
        super().__init__()
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.fc2 = nn.Linear(hidden_size, num_classes)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.fc2(self.fc1(x))  # no ReLU: two linear layers make one linear map
''',
            "convnet": _CONV_LAYERS + '''        for layer in (self.conv1, self.conv2, self.fc):
            nn.init.kaiming_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = self.conv2(x)  # the ReLU after the second convolution is missing
        return self.fc(torch.flatten(x, 1))
''',
            "count": '''
def convnet_param_count(in_channel, channel_1, channel_2, num_classes, image_size=32):
    # the weights only: the biases are forgotten
    return (channel_1 * in_channel * 5 * 5 + channel_2 * channel_1 * 3 * 3
            + num_classes * channel_2 * image_size * image_size)
''' + _COUNT_PARAMETERS,
            "save-load": _SAVE + '''

def load_weights(model, path):
    device = next(model.parameters()).device
    return model.load_state_dict(torch.load(path, map_location=device, weights_only=True))  # not the model
''',
        },
        "loses": ["test-two-layer", "test-convnet", "test-count", "test-save-load"],
        "says": {"two-layer-check": "the ReLU is missing between the two layers",
                 "convnet-check": "the ReLU after the second convolution is missing",
                 "count-check": "the biases are not counted",
                 "save-check": "it returned what load_state_dict returns"},
    },
    "relu-on-scores-fan-out-image-size-ignored-method-saved": {
        "replace": {
            "two-layer": '''
class TwoLayerNet(nn.Module):
    def __init__(self, input_size, hidden_size, num_classes):
        super().__init__()
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.fc2 = nn.Linear(hidden_size, num_classes)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return F.relu(self.fc2(F.relu(self.fc1(x))))  # a ReLU on the class scores too
''',
            "convnet": _CONV_LAYERS + '''        for layer in (self.conv1, self.conv2, self.fc):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out")  # fan_out instead of the default fan_in
            nn.init.zeros_(layer.bias)
''' + _CONV_FORWARD,
            "count": '''
def convnet_param_count(in_channel, channel_1, channel_2, num_classes, image_size=32):
    conv1 = channel_1 * in_channel * 5 * 5 + channel_1
    conv2 = channel_2 * channel_1 * 3 * 3 + channel_2
    fc = num_classes * channel_2 * 32 * 32 + num_classes  # 32 hard-coded: image_size ignored
    return conv1 + conv2 + fc
''' + _COUNT_PARAMETERS,
            "save-load": '''
def save_weights(model, path):
    torch.save(model.state_dict, path)  # the method itself, not its result
''' + _LOAD,
        },
        "loses": ["test-two-layer", "test-convnet-init", "test-count", "test-save-load"],
        "says": {"two-layer-check": "the ReLU is applied to the output too",
                 "init-check": "mode='fan_out'",
                 "count-check": "image_size is ignored",
                 "save-check": "It holds the method `model.state_dict` itself"},
    },
    "linear-sizes-swapped-biases-left-frozen-only-counted-no-return": {
        "replace": {
            "two-layer": '''
class TwoLayerNet(nn.Module):
    def __init__(self, input_size, hidden_size, num_classes):
        super().__init__()
        # written like the weight's shape (out, in): nn.Linear takes (in, out)
        self.fc1 = nn.Linear(hidden_size, input_size)
        self.fc2 = nn.Linear(num_classes, hidden_size)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))
''',
            "convnet": _CONV_LAYERS + '''        for layer in (self.conv1, self.conv2, self.fc):
            nn.init.kaiming_normal_(layer.weight)  # the biases keep their default random values
''' + _CONV_FORWARD,
            "count": _PARAM_COUNT + '''

def count_parameters(model, trainable_only=True):
    # the wrong way round: with trainable_only=True it counts the frozen ones
    return sum(p.numel() for p in model.parameters() if not p.requires_grad or not trainable_only)
''',
            "save-load": _SAVE + '''

def load_weights(model, path):
    device = next(model.parameters()).device
    model.load_state_dict(torch.load(path, map_location=device, weights_only=True))  # no return
''',
        },
        "loses": ["test-two-layer", "test-convnet-init", "test-count", "test-save-load"],
        "says": {"two-layer-check": "in and out are swapped",
                 "init-check": "every bias should start at zero",
                 "count-check": "the condition is the wrong way round",
                 "save-check": "`return model` is missing"},
    },
}

ALTERNATIVES = {
    "two-layer-sequential": {
        "replace": {
            "two-layer": '''
class TwoLayerNet(nn.Module):
    def __init__(self, input_size, hidden_size, num_classes):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(input_size, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, num_classes),
        )

    def forward(self, x):
        return self.net(x)
''',
        },
    },
    "two-layer-module-list-reshape-clamp": {
        "replace": {
            "two-layer": '''
class TwoLayerNet(nn.Module):
    def __init__(self, input_size, hidden_size, num_classes):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(input_size, hidden_size), nn.Linear(hidden_size, num_classes)])

    def forward(self, x):
        h = self.layers[0](x.reshape(x.shape[0], -1)).clamp(min=0)
        return self.layers[1](h)
''',
        },
    },
    "convnet-sequential-features-init-loop": {
        "replace": {
            "convnet": '''
class ThreeLayerConvNet(nn.Module):
    def __init__(self, in_channel, channel_1, channel_2, num_classes, image_size=32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channel, channel_1, 5, padding=2), nn.ReLU(),
            nn.Conv2d(channel_1, channel_2, 3, padding=1), nn.ReLU(),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(channel_2 * image_size ** 2, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.constant_(m.bias, 0.0)

    def forward(self, x):
        return self.classifier(self.features(x))
''',
        },
    },
    "convnet-contiguous-view-no-grad-zero": {
        "replace": {
            "convnet": '''
class ThreeLayerConvNet(nn.Module):
    def __init__(self, in_channel, channel_1, channel_2, num_classes, image_size=32):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channel, channel_1, kernel_size=(5, 5), padding=(2, 2))
        self.conv2 = nn.Conv2d(channel_1, channel_2, kernel_size=(3, 3), padding=(1, 1))
        self.fc = nn.Linear(in_features=channel_2 * image_size * image_size, out_features=num_classes)
        with torch.no_grad():
            for layer in [self.fc, self.conv2, self.conv1]:
                nn.init.kaiming_normal_(layer.weight, a=0)
                layer.bias.zero_()

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.contiguous().view(x.size(0), -1))
''',
        },
    },
    "count-by-layer-specs": {
        "replace": {
            "count": '''
def convnet_param_count(in_channel, channel_1, channel_2, num_classes, image_size=32):
    total = 0
    for c_in, c_out, k in [(in_channel, channel_1, 5), (channel_1, channel_2, 3)]:
        total += c_out * c_in * k * k + c_out  # weight and bias of one conv
    features = channel_2 * image_size ** 2
    return total + features * num_classes + num_classes


def count_parameters(model, trainable_only=True):
    wanted = filter(lambda p: p.requires_grad or not trainable_only, model.parameters())
    return sum(map(torch.numel, wanted))
''',
        },
    },
    "count-math-prod-and-loop": {
        "replace": {
            "count": '''
import math


def convnet_param_count(in_channel, channel_1, channel_2, num_classes, image_size=32):
    shapes = [(channel_1, in_channel, 5, 5), (channel_1,), (channel_2, channel_1, 3, 3), (channel_2,),
              (num_classes, channel_2 * image_size * image_size), (num_classes,)]
    return sum(math.prod(shape) for shape in shapes)


def count_parameters(model, trainable_only=True):
    n = 0
    for name, p in model.named_parameters():
        if trainable_only and not p.requires_grad:
            continue
        n += p.nelement()
    return n
''',
        },
    },
    "save-load-file-objects-explicit-strict": {
        "replace": {
            "save-load": '''
def save_weights(model, path):
    with open(path, "wb") as f:
        torch.save(model.state_dict(), f)


def load_weights(model, path):
    with open(path, "rb") as f:
        state = torch.load(f, map_location=next(model.parameters()).device, weights_only=True)
    model.load_state_dict(state, strict=True)
    return model
''',
        },
    },
    "save-load-keywords-device-from-state": {
        "replace": {
            "save-load": '''
def save_weights(model, path):
    torch.save(obj=model.state_dict(), f=str(path))


def load_weights(model, path):
    device = next(iter(model.state_dict().values())).device
    model.load_state_dict(torch.load(str(path), map_location=str(device), weights_only=True))
    return model
''',
        },
    },
}
