"""Import stub for dm-clrs's dataset module (class definitions only)."""
import dataclasses, types
@dataclasses.dataclass
class BuilderConfig:
    name: str = ''
class GeneratorBasedBuilder:
    pass
class Version(str):
    pass
class DatasetInfo:
    pass
class DownloadManager:
    pass
core = types.SimpleNamespace(BuilderConfig=BuilderConfig, GeneratorBasedBuilder=GeneratorBasedBuilder,
                             Version=Version, DatasetInfo=DatasetInfo)
download = types.SimpleNamespace(DownloadManager=DownloadManager)
def load(*args, **kwargs):
    raise RuntimeError("tensorflow_datasets stub: no TFDS on this machine")
