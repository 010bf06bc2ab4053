"""A user's own generator by file path or TorchScript, with its declared latent space and images."""
import json

import pytest
import torch

import mango
from mango import MangoError

MODULE = '''
import torch
from torch import nn
import mango
from mango.imagespace import ImageSpace

class Gen(nn.Module):
    latent_space = mango.LatentSpace(8, 16, (-1.0, 1.0))
    image_space = ImageSpace((1, 28, 28))

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(8, 28 * 28)

    def forward(self, z):
        return torch.sigmoid(self.fc(z.float())).view(-1, 1, 28, 28)

class Undeclared(nn.Module):
    def forward(self, z):
        return z
'''


@pytest.fixture()
def gen_file(tmp_path):
    path = tmp_path / "gens.py"
    path.write_text(MODULE)
    return path


def test_python_file_generator_runs_against_the_default_target(tmp_path, gen_file):
    gen = mango.GENERATORS.create(f"{gen_file}:Gen")
    assert gen.space == mango.LatentSpace(8, 16, (-1.0, 1.0)) and gen.image_shape == (1, 28, 28)
    z = torch.randint(0, 16, (3, 8))
    want = torch.sigmoid(gen.module.fc(gen.space.values(z).float())).view(-1, 1, 28, 28)
    torch.testing.assert_close(gen.decode(z), want)
    res = mango.run(generator=f"{gen_file}:Gen", optimizer="random", budget=20, out=tmp_path / "r", progress=False)
    config = res.config if isinstance(res.config, dict) else res.config.to_dict()
    assert res.n_queries == 20 and config["generator"] == f"{gen_file}:Gen"


def test_torchscript_generator_with_declaration(tmp_path, gen_file):
    module = mango.GENERATORS.create(f"{gen_file}:Gen").module
    path = tmp_path / "gen.pt"
    decl = {"latent": {"dim": 8, "size": 16, "bounds": [-1.0, 1.0]}, "image_shape": [1, 28, 28]}
    torch.jit.save(torch.jit.script(module), str(path), _extra_files={"mango.json": json.dumps(decl)})
    gen = mango.GENERATORS.create(str(path))
    z = torch.randint(0, 16, (2, 8))
    torch.testing.assert_close(gen.decode(z), module(gen.space.values(z)))
    bare = tmp_path / "bare.pt"
    torch.jit.save(torch.jit.script(module), str(bare))
    with pytest.raises(MangoError, match="needs mango.json with latent"):
        mango.GENERATORS.create(str(bare))


def test_undeclared_generator_fails_with_one_line(gen_file):
    with pytest.raises(MangoError) as exc:
        mango.GENERATORS.create(f"{gen_file}:Undeclared")
    assert "does not declare its latent space" in str(exc.value) and "\n" not in str(exc.value)


BAD = '''
import torch
from torch import nn
import mango


class Base(nn.Module):
    latent_space = mango.LatentSpace(4, 8, (-1.0, 1.0))
    image_shape = (1, 4, 4)

    def images(self, z):
        return torch.sigmoid(z.float().repeat(1, 4)).view(-1, 1, 4, 4)


class Numpy(Base):
    def forward(self, z):
        return self.images(z).numpy()


class Listed(Base):
    def forward(self, z):
        return [self.images(z)]


class Wrong(Base):
    def forward(self, z):
        return self.images(z).view(-1, 4, 4)


class BadSpace(Base):
    latent_space = {"dim": "four", "size": 8}

    def forward(self, z):
        return self.images(z)


class BadShape(Base):
    image_shape = (4, 4)

    def forward(self, z):
        return self.images(z)
'''


@pytest.mark.parametrize("cls, needle", [
    ("Numpy", "returned a numpy.ndarray; expected a torch.Tensor of images [batch, 1, 4, 4] = [2, 1, 4, 4]"),
    ("Listed", "returned a list; expected a torch.Tensor of images"),
    ("Wrong", "returned images of shape [2, 4, 4] for 2 latents; expected a torch.Tensor of images [batch, 1, 4, 4]"),
    ("BadSpace", "latent space of generator '{path}:BadSpace' does not describe a LatentSpace: latent space needs "
                 "integers dim >= 1 and size >= 2, got dim='four'"),
    ("BadShape", "does not describe an ImageSpace: image space shape must be three positive integers"),
])
def test_user_generator_with_wrong_outputs_or_declarations_fails_with_one_line(tmp_path, cls, needle):
    path = tmp_path / "bad_gens.py"
    path.write_text(BAD)
    with pytest.raises(MangoError) as exc:
        mango.GENERATORS.create(f"{path}:{cls}").decode(torch.zeros(2, 4, dtype=torch.long))
    assert needle.format(path=path) in str(exc.value) and "\n" not in str(exc.value)
