"""Typical wrong answers to notebook 06, used by the grading tests.

Each entry is one simulated student: ``replace`` maps solution cells
(grade_id) to the wrong code submitted, ``loses`` lists the graded cells that
must score zero. Every other graded cell must keep its full points, so the
mistakes combined in one submission are independent of each other.
"""

MISTAKES = {
    "plain-list-and-counts-tensors": {
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
            "count": '''
def convnet_param_count(in_channel, channel_1, channel_2, num_classes, image_size=32):
    conv1 = channel_1 * in_channel * 5 * 5 + channel_1
    conv2 = channel_2 * channel_1 * 3 * 3 + channel_2
    fc = num_classes * channel_2 * image_size * image_size + num_classes
    return conv1 + conv2 + fc


def count_parameters(model, trainable_only=True):
    # counts tensors, not numbers
    return len([p for p in model.parameters() if p.requires_grad or not trainable_only])
''',
        },
        "loses": ["test-two-layer", "test-count"],
    },
    "wrong-flatten-size-and-parameters-only-saved": {
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

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.fc(torch.flatten(x, 1))
''',
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
        "loses": ["test-convnet", "test-save-load"],
    },
    "view-default-init-and-pickled-model": {
        "replace": {
            "convnet": '''
class ThreeLayerConvNet(nn.Module):
    def __init__(self, in_channel, channel_1, channel_2, num_classes, image_size=32):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channel, channel_1, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1)
        self.fc = nn.Linear(channel_2 * image_size * image_size, num_classes)
        # no Kaiming initialisation: PyTorch's default init stays

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
            "convnet": '''
class ThreeLayerConvNet(nn.Module):
    def __init__(self, in_channel, channel_1, channel_2, num_classes, image_size=32):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channel, channel_1, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(channel_1, channel_2, kernel_size=3, padding=1)
        self.fc = nn.Linear(channel_2 * image_size * image_size, num_classes)
        for layer in (self.conv1, self.conv2, self.fc):
            nn.init.kaiming_uniform_(layer.weight)  # the right std, but a uniform distribution
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.fc(torch.flatten(x, 1))
''',
            "count": '''
def convnet_param_count(in_channel, channel_1, channel_2, num_classes, image_size=32):
    conv1 = channel_1 * in_channel * 5 * 5 + channel_1
    conv2 = channel_2 * channel_1 * 3 * 3 + channel_2
    fc = num_classes * channel_2 * image_size * image_size + num_classes
    return conv1 + conv2 + fc


def count_parameters(model, trainable_only=True):
    return sum(p.numel() for p in model.parameters())  # trainable_only ignored: frozen layers counted
''',
            "save-load": '''
def save_weights(model, path):
    torch.save(model.state_dict(), path)


def load_weights(model, path):
    device = next(model.parameters()).device
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state, strict=False)  # a file with missing keys loads silently
    return model
''',
        },
        "loses": ["test-two-layer", "test-convnet-init", "test-count", "test-save-load"],
    },
}
