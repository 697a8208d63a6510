"""Networks: UVAC (GMM prior) and categorical UVAC (Gumbel-Softmax); plain nn.Modules."""
from trainables.models.blocks import ConvDecoder, ConvEncoder
from trainables.models.cat_uvac import CatUVAC
from trainables.models.uvac import UVAC

__all__ = ["ConvEncoder", "ConvDecoder", "UVAC", "CatUVAC"]
