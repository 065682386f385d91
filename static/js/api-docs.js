// The API page: Swagger UI on this server's own OpenAPI document (no CDN; works offline).
// "Try it out" sends real requests with this browser's session cookie, as the API expects.
(function () {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    deepLinking: true,
    // No calls to the public validator service: the page must work with no network.
    validatorUrl: null,
    tryItOutEnabled: false,
    withCredentials: true,
  });
})();
