"""The OpenAPI schema endpoint."""

from typing import Any, ClassVar

from drf_spectacular.views import SpectacularAPIView
from rest_framework.response import Response


class SchemaView(SpectacularAPIView):
    """drf-spectacular's schema view, built once per process and version: the schema is
    the code's, and building it walks every view (tens of milliseconds) for anyone who
    asks. Rendering (YAML or JSON) stays per request."""

    _built: ClassVar[dict[str | None, dict]] = {}

    def _get_schema_response(self, request: Any) -> Response:
        version = self.api_version or request.version or self._get_version_parameter(request)
        schema = self._built.get(version)
        if schema is None:
            generator = self.generator_class(urlconf=self.urlconf, api_version=version, patterns=self.patterns)
            schema = self._built[version] = generator.get_schema(request=request, public=self.serve_public)
        filename = self._get_filename(request, version)
        return Response(data=schema, headers={"Content-Disposition": f'inline; filename="{filename}"'})
