import pytest

pytest.importorskip("captum")
