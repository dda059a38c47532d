// spheroid-box: the 2 mm tissue cube of the tme-3d scenario with a tumour spheroid at
// its centre, meshed finely in and around the spheroid (unstructured tetrahedra).
//   regions    "spheroid" (tag 1): a ball of spheroid_radius at the centre
//              "stroma" (tag 2): the rest of the cube
//   boundaries "left", "right" (x), "front", "back" (y), "bottom", "top" (z),
//              tags 1-6 as for the built-in box
// Regenerate with   tumorpde mesh spheroid-box -o cube.msh --set cell_size=0.15
// and use it in tme-3d with
//   mpiexec -n 4 tumorpde run tme-3d --set mesh.shape=file --set 'mesh.file="cube.msh"'
SetFactory("OpenCASCADE");

DefineConstant[
  size = {2.0, Name "Parameters/size"},
  spheroid_radius = {0.25, Name "Parameters/spheroid_radius"},
  cell_size = {0.12, Name "Parameters/cell_size"},
  fine_cell_size = {0.05, Name "Parameters/fine_cell_size"},
  fine_radius = {0.5, Name "Parameters/fine_radius (refined around the centre)"}
];
c = 0.5 * size;

Box(1) = {0, 0, 0, size, size, size};
Sphere(2) = {c, c, c, spheroid_radius};
BooleanFragments{ Volume{1}; Delete; }{ Volume{2}; Delete; }

eps = 1e-6 * size;
r = spheroid_radius + eps;
ball() = Volume In BoundingBox{c - r, c - r, c - r, c + r, c + r, c + r};
all() = Volume{:};
stroma() = all();
stroma() -= ball();

Physical Volume("spheroid", 1) = {ball()};
Physical Volume("stroma", 2) = {stroma()};
Physical Surface("left", 1) = Surface In BoundingBox{-eps, -eps, -eps, eps, size + eps, size + eps};
Physical Surface("right", 2) = Surface In BoundingBox{size - eps, -eps, -eps, size + eps, size + eps, size + eps};
Physical Surface("front", 3) = Surface In BoundingBox{-eps, -eps, -eps, size + eps, eps, size + eps};
Physical Surface("back", 4) = Surface In BoundingBox{-eps, size - eps, -eps, size + eps, size + eps, size + eps};
Physical Surface("bottom", 5) = Surface In BoundingBox{-eps, -eps, -eps, size + eps, size + eps, eps};
Physical Surface("top", 6) = Surface In BoundingBox{-eps, -eps, size - eps, size + eps, size + eps, size + eps};

// cell size: fine_cell_size within fine_radius of the centre, growing linearly to
// cell_size over half the domain size
Field[1] = MathEval;
Field[1].F = Sprintf("min(%g, max(%g, %g + (%g - %g)*(sqrt((x-%g)^2+(y-%g)^2+(z-%g)^2) - %g)/%g))",
                     cell_size, fine_cell_size, fine_cell_size, cell_size, fine_cell_size,
                     c, c, c, fine_radius, 0.5 * size);
Background Field = 1;
Mesh.MeshSizeFromPoints = 0;
Mesh.MeshSizeExtendFromBoundary = 0;
Mesh.MeshSizeFromCurvature = 0;
