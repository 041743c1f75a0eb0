"""The real data sets of the paper, one ``Record`` each: the 16 zero-shot classification sets
and the multi-label MS-COCO 2017 validation set.

URLs and md5s are torchvision's (tests/data/test_registry.py compares them with torchvision's
own class attributes); sha256 and sizes are TFDS's ``url_checksums`` where the URL is the same;
FGVC-Aircraft's md5 is the one its web page publishes.  Sample counts are the published ones.
"""

from __future__ import annotations

from . import adapters as ad
from .archives import post_caltech101, post_imagenet
from .spec import DatasetSpec, Record, Resource


def _instructions(name: str, files: str, layout: str, verified: str) -> str:
    return (f"Get {files}; put the archive(s) in <root>/{name}/ and run `ucat data {name}` "
            f"(verifies, extracts, writes MANIFEST.json), or extract them yourself so that "
            f"<root>/{name}/{layout} exists. Verified: {verified}.")


_VGG = "https://www.robots.ox.ac.uk/~vgg/data"
_FLOWERS = f"{_VGG}/flowers/102/"
_PCAM = "https://zenodo.org/record/2546921/files/"
_COCO = "http://images.cocodataset.org"

RECORDS: tuple[Record, ...] = (
    Record(
        DatasetSpec(
            "tinyimagenet", "TinyImageNet", 200, "val", 10000,
            "http://cs231n.stanford.edu/tiny-imagenet-200.zip (own loader; val read through val_annotations.txt)",
            True,
            _instructions("tinyimagenet", "http://cs231n.stanford.edu/tiny-imagenet-200.zip (248,100,043 bytes)",
                          "tiny-imagenet-200/{wnids.txt,words.txt,train/<wnid>/images/*.JPEG,val/images/*.JPEG,"
                          "val/val_annotations.txt} (do not reorganise val/)",
                          "zip md5 90528d7ca1a48142e341f4ef8d21d0de; the 200 wnids; 100000 train and 10000 val "
                          "images, every class present")),
        (Resource("tiny-imagenet-200.zip", ("http://cs231n.stanford.edu/tiny-imagenet-200.zip",),
                  "90528d7ca1a48142e341f4ef8d21d0de", size=248100043),),
        ad.Tiny(), extra_counts={"train": 100000}),
    Record(
        DatasetSpec(
            "cifar10", "CIFAR10", 10, "test", 10000,
            "torchvision.datasets.CIFAR10 (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz)", True,
            _instructions("cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                          "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
                          "archive md5 and torchvision's md5 of every batch file; 10000 test images")),
        (Resource("cifar-10-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                  "c58f30108f718f92721af3b95e74349a"),),
        ad.cifar10(),
        file_md5={"cifar-10-batches-py/data_batch_1": "c99cafc152244af753f735de768cd75f",
                  "cifar-10-batches-py/data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
                  "cifar-10-batches-py/data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
                  "cifar-10-batches-py/data_batch_4": "634d18415352ddfa80567beed471001a",
                  "cifar-10-batches-py/data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
                  "cifar-10-batches-py/test_batch": "40351d587109b95175f43aff81a1287e",
                  "cifar-10-batches-py/batches.meta": "5ff9c542aee3614f3951f8cda6e48888"}),
    Record(
        DatasetSpec(
            "cifar100", "CIFAR100", 100, "test", 10000,
            "torchvision.datasets.CIFAR100 (https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz)", True,
            _instructions("cifar100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                          "cifar-100-python/{train,test,meta}",
                          "archive md5 and torchvision's md5 of each file; 10000 test images (fine labels)")),
        (Resource("cifar-100-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                  "eb9058c3a382ffc7106e4002c42a8d85"),),
        ad.cifar100(),
        file_md5={"cifar-100-python/train": "16019d7e3df5f24257cddd939b257f8d",
                  "cifar-100-python/test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
                  "cifar-100-python/meta": "7973b15100ade9c7d40fb424638fde48"}),
    Record(
        DatasetSpec(
            "stl10", "STL10", 10, "test", 8000,
            "torchvision.datasets.STL10 (http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz)", True,
            _instructions("stl10", "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz (2.6 GB)",
                          "stl10_binary/{test_X.bin,test_y.bin,class_names.txt}",
                          "archive md5 + sha256; torchvision's md5 of test_X.bin/test_y.bin; 8000 test images")),
        (Resource("stl10_binary.tar.gz", ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",),
                  "91f7769df0f17e558f3565bffb0c7dfb",
                  "f31fd99273a1acb8609c8db427cebb1de3f71de77758cdc0e22956e1289b9866", 2640397119),),
        ad.Stl(),
        file_md5={"stl10_binary/train_X.bin": "918c2871b30a85fa023e0c44e0bee87f",
                  "stl10_binary/train_y.bin": "5a34089d4802c674881badbb80307741",
                  "stl10_binary/unlabeled_X.bin": "5242ba1fed5e4be9e1e742405eb56ca4",
                  "stl10_binary/test_X.bin": "7f263ba9f9e0b06b93213547f721ac82",
                  "stl10_binary/test_y.bin": "36f9794fa4beb8a2c72628de14fa638e"}),
    Record(
        DatasetSpec(
            "imagenet", "ImageNet", 1000, "val", 50000,
            "torchvision.datasets.ImageNet (official ILSVRC2012 archives, no public download)", False,
            "Download ILSVRC2012_devkit_t12.tar.gz and ILSVRC2012_img_val.tar from https://image-net.org "
            "(registration required), put both in <root>/imagenet/ and run `ucat data imagenet` (checks "
            "torchvision's md5s, builds meta.bin and sorts val into <root>/imagenet/val/<wnid>/ with "
            "torchvision's own helpers). Alternatively place an already sorted val/<wnid>/*.JPEG tree (1000 wnid "
            "folders) there. Verified: archive md5s (fa75699e90414af021442c21a62c3abf devkit, "
            "29b22e2961454d5413ddabcf34fc5622 val); the 1000 wnids; 50000 val images."),
        (Resource("ILSVRC2012_devkit_t12.tar.gz", (), "fa75699e90414af021442c21a62c3abf", action="keep"),
         Resource("ILSVRC2012_img_val.tar", (), "29b22e2961454d5413ddabcf34fc5622", action="keep")),
        ad.ImageNet(), post=post_imagenet),
    Record(
        DatasetSpec(
            "caltech101", "Caltech101", 101, "all", 8677,
            "torchvision.datasets.Caltech101 (https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip)",
            True,
            _instructions("caltech101", "https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",
                          "caltech101/101_ObjectCategories/<category>/image_NNNN.jpg (BACKGROUND_Google included, "
                          "it is dropped as torchvision does)",
                          "zip md5 + sha256; the 101 category folders; 8677 images (no official split: all are "
                          "evaluated)")),
        (Resource("caltech-101.zip", ("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",),
                  "3138e1922a9193bfa496528edbbc45d0",
                  "331234750fc7f77520e50d9565e8b6907b03565e30320da1401130db08c61f91", 137414764,
                  dest="caltech101/.zip"),),
        ad.caltech101(), post=post_caltech101),
    Record(
        DatasetSpec(
            "caltech256", "Caltech256", 257, "all", 30607,
            "torchvision.datasets.Caltech256 (https://data.caltech.edu/records/nyy15-4j048/files/"
            "256_ObjectCategories.tar)", True,
            _instructions("caltech256",
                          "https://data.caltech.edu/records/nyy15-4j048/files/256_ObjectCategories.tar",
                          "caltech256/256_ObjectCategories/NNN.<name>/NNN_MMMM.jpg (257 folders incl. 257.clutter)",
                          "archive md5; the 257 folders; 30607 images (no official split: all are evaluated)")),
        (Resource("256_ObjectCategories.tar",
                  ("https://data.caltech.edu/records/nyy15-4j048/files/256_ObjectCategories.tar",),
                  "67b4f42ca05d46448c6bb8ecd2220f6d", dest="caltech256"),),
        ad.caltech256()),
    Record(
        DatasetSpec(
            "oxford_pets", "OxfordPets", 37, "test", 3669,
            "torchvision.datasets.OxfordIIITPet (https://www.robots.ox.ac.uk/~vgg/data/pets/)", True,
            _instructions("oxford_pets", "images.tar.gz and annotations.tar.gz from "
                          "https://www.robots.ox.ac.uk/~vgg/data/pets/data/",
                          "oxford-iiit-pet/{images/*.jpg,annotations/test.txt}",
                          "archive md5s; breed names agree with the labels; 3669 test images")),
        (Resource("images.tar.gz", (f"{_VGG}/pets/data/images.tar.gz",), "5c4f3ee8e5d25df40f4fd59a7f44e54c",
                  dest="oxford-iiit-pet"),
         Resource("annotations.tar.gz", (f"{_VGG}/pets/data/annotations.tar.gz",),
                  "95a8c909bbe2e81eed6a22bccdf3f68f", dest="oxford-iiit-pet")),
        ad.Pets()),
    Record(
        DatasetSpec(
            "flowers102", "Flowers102", 102, "test", 6149,
            "torchvision.datasets.Flowers102 (https://www.robots.ox.ac.uk/~vgg/data/flowers/102/)", True,
            _instructions("flowers102", "102flowers.tgz, imagelabels.mat and setid.mat from "
                          "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/",
                          "flowers-102/{jpg/image_NNNNN.jpg,imagelabels.mat,setid.mat}",
                          "md5 + sha256 of the archive and both .mat files; 6149 test images")),
        (Resource("102flowers.tgz", (_FLOWERS + "102flowers.tgz",), "52808999861908f626f3c1f4e79d11fa",
                  "2d01ecc807db462958cfe3d92f57a8c252b4abd240eb955770201e45f783b246", 344862509, dest="flowers-102"),
         Resource("imagelabels.mat", (_FLOWERS + "imagelabels.mat",), "e0620be6f572b9609742df49c70aed4d",
                  "4903e94206bac23bf772aadf06451916df56b58fc483a62db32a97b82656651d", 502, "file", "flowers-102"),
         Resource("setid.mat", (_FLOWERS + "setid.mat",), "a5357ecc9cb78c4bef273ce3793fc85c",
                  "46b8678f91fd95d3c8f4feab80d271a6c834a1dd896fe29fd3e6ad9ce5c8dccd", 14989, "file", "flowers-102")),
        ad.Flowers(),
        file_md5={"flowers-102/imagelabels.mat": "e0620be6f572b9609742df49c70aed4d",
                  "flowers-102/setid.mat": "a5357ecc9cb78c4bef273ce3793fc85c"}),
    Record(
        DatasetSpec(
            "fgvc_aircraft", "FGVCAircraft", 100, "test", 3333,
            "torchvision.datasets.FGVCAircraft (https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/"
            "fgvc-aircraft-2013b.tar.gz), variant level", True,
            _instructions("fgvc_aircraft", "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/"
                          "fgvc-aircraft-2013b.tar.gz",
                          "fgvc-aircraft-2013b/data/{variants.txt,images_variant_test.txt,images/*.jpg}",
                          "archive md5 d4acdd33327262359767eeaa97a4f732 (published on the data set's page; "
                          "torchvision has none); the 100 variants; 3333 test images")),
        (Resource("fgvc-aircraft-2013b.tar.gz", (f"{_VGG}/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",),
                  "d4acdd33327262359767eeaa97a4f732"),),
        ad.Fgvc()),
    Record(
        DatasetSpec(
            "stanford_cars", "StanfordCars", 196, "test", 8041,
            "torchvision.datasets.StanfordCars (original URL gone: manual placement)", False,
            "The original Stanford URLs are dead and torchvision's download raises by design. Obtain the original "
            "car_devkit.tgz, cars_test.tgz and cars_test_annos_withlabels.mat (e.g. from a mirror you trust), put "
            "them in <root>/stanford_cars/ and run `ucat data stanford_cars` (checks their sha256 against the "
            "values TFDS publishes and extracts them), or lay out the files yourself as torchvision expects: "
            "<root>/stanford_cars/stanford_cars/{devkit/cars_meta.mat,cars_test_annos_withlabels.mat,"
            "cars_test/*.jpg}. Verified: the 196 class names of cars_meta.mat; 8041 test images."),
        (Resource("car_devkit.tgz", (), sha256="b97deb463af7d58b6bfaa18b2a4de9829f0f79e8ce663dfa9261bf7810e9accd",
                  size=330960, dest="stanford_cars"),
         Resource("cars_test.tgz", (), sha256="bffea656d6f425cba3c91c6d83336e4c5f86c6cffd8975b0f375d3a10da8e243",
                  size=977350468, dest="stanford_cars"),
         Resource("cars_test_annos_withlabels.mat", (),
                  sha256="790f75be8ea34eeded134cc559332baf23e30e91367e9ddca97d26ed9b895f05", size=185758,
                  action="file", dest="stanford_cars")),
        ad.Cars()),
    Record(
        DatasetSpec(
            "sun397", "SUN397", 397, "all", 108754,
            "torchvision.datasets.SUN397 (http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz, "
            "currently unreachable: manual placement)", False,
            "torchvision's download URL returns 404. Obtain SUN397.tar.gz (39,077,296,924 bytes, md5 "
            "8ca2778205c41d23104230ba66911c7a) from a mirror you trust, put it in <root>/sun397/ and run "
            "`ucat data sun397` (checks md5 + sha256, extracts), or extract it yourself so that "
            "<root>/sun397/SUN397/{ClassName.txt,a/abbey/sun_*.jpg,...} exists. Verified: the 397 classes of "
            "ClassName.txt; 108754 images (no official split: all are evaluated, as torchvision and the "
            "official UCAT code do)."),
        (Resource("SUN397.tar.gz", ("http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",),
                  "8ca2778205c41d23104230ba66911c7a",
                  "f404130965a7ad77bed5ececc71e720ab50f3cc1e1bb257257610d38f3b928ec", 39077296924),),
        ad.Sun()),
    Record(
        DatasetSpec(
            "food101", "Food101", 101, "test", 25250,
            "torchvision.datasets.Food101 (http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz)", True,
            _instructions("food101", "http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz (5 GB)",
                          "food-101/{meta/test.json,images/<class>/*.jpg}",
                          "archive md5 + sha256; the 101 classes; 25250 test images")),
        (Resource("food-101.tar.gz", ("http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",),
                  "85eeb15f3717b99a5da872d97d918f87",
                  "d97d15e438b7f4498f96086a4f7e2fa42a32f2712e87d3295441b2b6314053a4", 4996278331),),
        ad.Food()),
    Record(
        DatasetSpec(
            "eurosat", "EuroSAT", 10, "all", 27000,
            "torchvision.datasets.EuroSAT (RGB, https://huggingface.co/datasets/torchgeo/eurosat)", True,
            _instructions("eurosat", "EuroSAT.zip (RGB) from https://huggingface.co/datasets/torchgeo/eurosat",
                          "eurosat/2750/<Class>/*.jpg",
                          "zip md5; the 10 class folders; 27000 images (no official split: all are evaluated)")),
        (Resource("EuroSAT.zip", ("https://huggingface.co/datasets/torchgeo/eurosat/resolve/"
                                  "c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip",),
                  "c8fa014336c82ac7804f0398fcb19387", dest="eurosat"),),
        ad.EuroSat()),
    Record(
        DatasetSpec(
            "dtd", "DTD", 47, "test", 1880,
            "torchvision.datasets.DTD (https://www.robots.ox.ac.uk/~vgg/data/dtd/), partition 1", True,
            _instructions("dtd", "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
                          "dtd/dtd/{images/<class>/*.jpg,labels/test1.txt}",
                          "archive md5 + sha256; the 47 classes; 1880 test images (partition 1)")),
        (Resource("dtd-r1.0.1.tar.gz", (f"{_VGG}/dtd/download/dtd-r1.0.1.tar.gz",),
                  "fff73e5086ae6bdbea199a49dfb8a4c1",
                  "e42855a52a4950a3b59612834602aa253914755c95b0cff9ead6d07395f8e205", 625239812, dest="dtd"),),
        ad.Dtd()),
    Record(
        DatasetSpec(
            "pcam", "PCAM", 2, "test", 32768,
            "torchvision.datasets.PCAM (https://zenodo.org/record/2546921, Google Drive as fallback)", True,
            _instructions("pcam", "camelyonpatch_level_2_split_test_x.h5.gz and _test_y.h5.gz from "
                          "https://zenodo.org/record/2546921 (the Google Drive fallback needs `pip install gdown`)",
                          "pcam/camelyonpatch_level_2_split_test_{x,y}.h5 (decompressed)",
                          "md5 (torchvision) + sha256 (TFDS) of the .gz files; HDF5 shapes; 32768 test patches")),
        (Resource("camelyonpatch_level_2_split_test_x.h5.gz",
                  (_PCAM + "camelyonpatch_level_2_split_test_x.h5.gz?download=1",
                   "gdrive:1qV65ZqZvWzuIVthK8eVDhIwrbnsJdbg_"),
                  "d8c2d60d490dbd479f8199bdfa0cf6ec",
                  "79174c2201ad521602a5888be8f36ee10875f37403dd3f2086caf2182ef87245", 800875929, "gunzip", "pcam"),
         Resource("camelyonpatch_level_2_split_test_y.h5.gz",
                  (_PCAM + "camelyonpatch_level_2_split_test_y.h5.gz?download=1",
                   "gdrive:17BHrSrwWKjYsOgTMmoqrIjDy6Fa2o_gP"),
                  "60a7035772fbdb7f34eb86d4420cf66a",
                  "0a522005fccc8bbd04c5a117bfaf81d8da2676f03a29d7499f71d0a0bd6068ef", 3040, "gunzip", "pcam")),
        ad.Pcam()),
    Record(
        DatasetSpec(
            "coco2017", "MS-COCO 2017", 80, "val", 5000,
            "http://images.cocodataset.org (val2017 images + 2017 instance annotations, read with pycocotools; "
            "multi-label: every category an image has an annotation of)", True,
            _instructions("coco2017", f"{_COCO}/zips/val2017.zip (815,585,330 bytes) and "
                          f"{_COCO}/annotations/annotations_trainval2017.zip (252,907,541 bytes)",
                          "{annotations/instances_val2017.json,val2017/*.jpg}",
                          "size + sha256 of both zips (TFDS); the 80 categories in id order; 5000 val images, "
                          "every category present"),
            multilabel=True),
        # size and sha256: TFDS's checksums for coco/2017 (tensorflow/datasets,
        # tensorflow_datasets/url_checksums/coco2017.txt); no md5 is published by a maintained registry
        (Resource("val2017.zip", (f"{_COCO}/zips/val2017.zip",),
                  sha256="4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05", size=815585330),
         Resource("annotations_trainval2017.zip", (f"{_COCO}/annotations/annotations_trainval2017.zip",),
                  sha256="113a836d90195ee1f884e704da6304dfaaecff1f023f49b6ca93c4aaae470268", size=252907541)),
        ad.Coco()),
)

#: name -> record; the one table every other part of ucat.data.real reads (tests replace entries).
REGISTRY: dict[str, Record] = {r.spec.name: r for r in RECORDS}
