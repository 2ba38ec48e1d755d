"""The networks of the image benchmarks: SegNet-MTAN / plain SegNet (NYUv2, CityScapes), FAMO's CelebA CNN."""

from go4align.benchmarks.models.celeba_cnn import CelebACNN
from go4align.benchmarks.models.segnet import ARCHITECTURES, SegNetMTAN, SegNetSplit, build_segnet

__all__ = ["ARCHITECTURES", "CelebACNN", "SegNetMTAN", "SegNetSplit", "build_segnet"]
