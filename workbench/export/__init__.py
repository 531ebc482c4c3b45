"""Export to production: bundles (bundle.py), their verification (verify.py) and the service
(service.py, app.py). FastAPI is imported only by app.py, when a bundle is served."""

from workbench.export.bundle import Bundle, BundleError, export, load
from workbench.export.verify import Verification, verify

__all__ = ["Bundle", "BundleError", "Verification", "export", "load", "verify"]
